// Package uitest drives the web console (package console/ui) in headless
// Chromium with chromedp, as an operator would: against a fake two-node
// API in the test binary (quick, no root), and against two real safekitd
// nodes of the test harness (internal/testcluster). It holds only tests.
package uitest
