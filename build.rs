//! Planted bugs, for testing the checks themselves: `CORUM_PLANT=NAME cargo test ...` builds
//! corum with the bug `NAME` compiled in (the `corum_plant` cfgs in `src/`; the scripts
//! `tests/planted_sim.sh` and `loom-tests/planted.sh` list them and the check that must
//! catch each). Without `CORUM_PLANT`, as in every normal build, nothing is planted.
//! Setting the cfg here rather than through `RUSTFLAGS` rebuilds corum alone, not its
//! dependencies, when the plant changes.

fn main() {
    println!("cargo::rerun-if-env-changed=CORUM_PLANT");
    if let Some(plant) = std::env::var("CORUM_PLANT").ok().filter(|plant| !plant.is_empty()) {
        println!("cargo::rustc-cfg=corum_plant");
        println!("cargo::rustc-cfg=corum_plant=\"{plant}\"");
    }
}
