//! Link flags of every executable of this package (the `irsa` binary, tests, benches).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=IRSA_PACK_RELATIVE_RELOCS");
    let var = |name| std::env::var(name).unwrap_or_default();
    // DT_RELR: the position-independent executable's ~56k relative relocations, which the
    // dynamic loader reads at every start, packed from 24 bytes each (1.3 MB of `.rela.dyn`,
    // all of it resident in every process) into a bitmap of 16 KB. Opt-in, because the result
    // needs glibc 2.36 where it runs, whatever the glibc it was built against: the image's
    // build (distroless Debian 12) and the benchmarks set it. Linkers that do not know the
    // flag ignore it. Measured in docs/development.md "Benchmarks".
    if var("IRSA_PACK_RELATIVE_RELOCS") == "1"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
    {
        println!("cargo:rustc-link-arg=-Wl,-z,pack-relative-relocs");
    }
}
