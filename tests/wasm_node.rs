//! The WebAssembly binding under Node (`wasm-pack test --node`, run by
//! scripts/test-wasm): the shared checks of `wasm_common`.
#![cfg(target_arch = "wasm32")]

mod wasm_common;
