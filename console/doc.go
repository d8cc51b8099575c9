// Package console is the server side of the web console and of the REST
// API of a node: what safekitd serves on its web port (9010), as SafeKit
// 8.2 does (User's Guide ch. 3, §10.9.5, ch. 11).
//
// It owns:
//
//   - the routes of the web service (gorilla/mux), described by one table
//     that also produces the OpenAPI document (GET /api/v1.0/openapi.json):
//     sessions, API keys, reads of the node, its cluster and its modules,
//     module control, cluster and module configuration, the health probes,
//     and the distributed commands of `safekit -H` whose handlers the
//     daemon gives;
//   - who the caller is and what it may do: the session cookie sessionSK
//     made by POST /login, bearer API keys (SAFE/web/conf/apikeys, hashes
//     only), HTTP basic authentication (package webauth), the roles Admin,
//     Control and Monitor, CSRF tokens, the Origin of websockets, the rate
//     limit of failed logins, the security headers and optional HTTPS;
//   - the relay to the other nodes of the cluster (/api/v1.0/nodes/NODE/...)
//     with the private user of distributed commands, carrying the user and
//     role of the caller, so that a browser talks to one node only;
//   - the live streams over websockets (gorilla/websocket): the module log,
//     the script logs as they are written, and the state of every module of
//     every node. A slow or dead browser never slows the daemon: each
//     connection has one writer goroutine and a bounded queue, and what does
//     not fit is dropped and counted.
//
// The daemon gives a Backend: the roots of the node, a client of its local
// API (the one the safekit command uses) and a way to run a safekit command
// for a caller. Everything the CLI can do goes through that Runner, so the
// console and the command line share one code path.
package console
