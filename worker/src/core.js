// The WebAssembly core (../../pkg, built by scripts/build-wasm), instantiated once
// per isolate on first use: the module is compiled by the runtime at deploy time
// (wrangler.toml's CompiledWasm rule), so `initSync` only instantiates it.

import wasmModule from '../../pkg/cafe_etl_bg.wasm';
import { initSync } from '../../pkg/cafe_etl.js';

let wasmReady = false;

/** Instantiates the core on first call; every entry point calls it before using the core. */
export function wasm() {
  if (!wasmReady) {
    initSync({ module: wasmModule });
    wasmReady = true;
  }
}
