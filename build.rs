//! Link flags of the package's executables: the image's link, opt-in (`IRSA_IMAGE_LINK=1`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=IRSA_IMAGE_LINK");
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("IRSA_IMAGE_LINK") != "1"
        || var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
    {
        return;
    }
    // DT_RELR: the position-independent executable's ~56k relative relocations, which the
    // dynamic loader reads at every start, packed from 24 bytes each (1.3 MB of `.rela.dyn`,
    // all of it resident in every process) into a bitmap of 16 KB. Opt-in, because the result
    // needs glibc 2.36 where it runs, whatever the glibc it was built against: the image's
    // build (distroless Debian 12) and the benchmarks set it. Linkers that do not know the
    // flag ignore it.
    println!("cargo:rustc-link-arg=-Wl,-z,pack-relative-relocs");
}
