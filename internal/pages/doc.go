// Package pages serves hybridcast's own HTML pages: the player
// (/watch/{stream}: WebRTC through WHEP first, LL-HLS with hls.js or the
// browser's own HLS as the fallback), the browser publisher
// (/publish/{stream}: camera or screen through WHIP, simulcast) and the
// dashboard (/: the live streams, refreshed from /api/streams).
//
// The pages are html/template files embedded in the binary, each with its
// own small script; no third-party code. The players (hls.js) come from
// package web, mounted by the caller; without them the watch page says that
// the HLS fallback is unavailable.
package pages
