// Package web serves the third-party browser players of hybridcast: hls.js
// for HLS and dash.js for MPEG-DASH.
//
// The players are not in the repository. npm installs them, pinned by
// web/package-lock.json, into web/node_modules:
//
//	npm ci --prefix web      # or scripts/setup, which skips it when done
//
// Assets finds the installed files at run time and serves them; it fails
// with an error that names that command when they are missing. The server
// mounts the handler under /assets/:
//
//	dir, err := web.FindDir()          // <repo>/web, from the working directory
//	h, err := web.Assets(dir)
//	mux.Handle("/assets/", http.StripPrefix("/assets", h))
//	page := `<script src="/assets/` + h.Path(web.HLSJS) + `"></script>`
//
// Files served (URL path → file under the directory given to Assets):
//
//	/hls.min.js       node_modules/hls.js/dist/hls.min.js
//	/dash.all.min.js  node_modules/dashjs/dist/modern/umd/dash.all.min.js
//
// The npm package of dash.js is "dashjs"; "dash.js" is an unrelated package.
package web
