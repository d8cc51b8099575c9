// Package uitest drives the web console (package console/ui) in headless
// browsers, as an operator would: Chromium with chromedp against a fake
// two-node API in the test binary (quick, no root) and against two real
// safekitd nodes of the test harness (internal/testcluster); Firefox over
// WebDriver BiDi (bidi_test.go) against real nodes too. It holds only
// tests.
package uitest
