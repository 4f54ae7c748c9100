// Package cdn holds configurations for real caches in front of the
// hybridcast origin, and the tests that prove them: an nginx template in
// cdn/nginx and a Varnish VCL in cdn/varnish (see cdn/README.md). The
// package has no Go API; its tests start the Debian nginx and varnishd
// on loopback in front of an origin fed by a live packager, and reach the
// origin only over HTTP.
package cdn
