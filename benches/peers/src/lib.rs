//! Empty: this package exists so that cargo fetches and builds the peer allocators'
//! `-sys` crates (see Cargo.toml); `cargo xtask bench` links their outputs into shared
//! objects for `LD_PRELOAD`.
