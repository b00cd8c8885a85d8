//! Link flags of every executable of this package (the `irsa` binary, tests, benches).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        // DT_RELR: the position-independent executable's ~56k relative relocations, which
        // the dynamic loader reads at every start, packed from 24 bytes each (1.3 MB of
        // `.rela.dyn`, all of it resident in every process) into a bitmap of a few KB.
        // Needs glibc 2.36 at run time (Debian 12, the image's distroless base); linkers that
        // do not know the flag ignore it. Measured in docs/development.md "Benchmarks".
        println!("cargo:rustc-link-arg=-Wl,-z,pack-relative-relocs");
    }
}
