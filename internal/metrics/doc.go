// Package metrics serves hybridcast's Prometheus metrics (GET /metrics).
//
// It reads the server's own counters at scrape time — sfu's cumulative
// per-stream counters, the WHIP and WHEP endpoints' session and rejection
// counts — so nothing on the packet path increments a Prometheus metric.
// Metrics live in the Metrics' own registry, never in client_golang's
// global default one, together with the Go runtime and process
// collectors.
//
// Other parts of the server (for example the HLS/DASH origin's request
// metrics) add theirs with [Metrics.Register].
//
// Names follow the Prometheus conventions: a hybridcast_ prefix, _total on
// counters, _bytes for byte counts; per-stream series carry a stream label.
package metrics
