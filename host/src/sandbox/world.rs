//! The one `bindgen!` of the host: Rust bindings for `wit/plugin.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "task-plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});
