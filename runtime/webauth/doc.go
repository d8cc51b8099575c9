// Package webauth owns the configuration and the credentials of a node's web
// service (the TCP port that serves distributed commands, the API and, later,
// the console), laid out as SafeKit lays them out (User's Guide ch. 11):
//
//   - SAFE/web/conf/httpd.conf: our own small format with SafeKit's lines,
//     "Define httpport 9010", "Define usefile" (file authentication, the
//     default) or "Define unsecure" (no authentication: a lab cluster);
//   - SAFE/web/conf/user.conf: users and their bcrypt hashes, htpasswd
//     format ("admin:$2y$10$...");
//   - SAFE/web/conf/group.conf: optional roles, "Admin : admin",
//     "Control : manager", "Monitor : op1 op2"; without it every user is
//     Admin;
//   - SAFE/private/conf/rcmd (mode 0600): the client side of the private
//     user of distributed commands, "rcmdadmin:<password>". Its hash is in
//     user.conf like any user's, and it is always an Admin.
//
// An Authenticator checks HTTP basic credentials against these files and
// wraps the handlers that need a role.
package webauth
