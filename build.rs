//! Planted bugs, for testing the checks themselves: `CORUM_PLANT=NAME cargo test ...` builds
//! corum with the bug `NAME` compiled in (see `src/plant.rs`, which lists every plant, and
//! the scripts `tests/planted_sim.sh`, `tests/planted_model.sh` and `loom-tests/planted.sh`,
//! which name the check that must catch each). Without `CORUM_PLANT`, as in every normal
//! build, nothing is planted. Passing the plant here rather than through `RUSTFLAGS`
//! rebuilds corum alone, not its dependencies, when the plant changes.

fn main() {
    println!("cargo::rerun-if-env-changed=CORUM_PLANT");
    let plant = std::env::var("CORUM_PLANT").unwrap_or_default();
    println!("cargo::rustc-env=CORUM_PLANT_ACTIVE={plant}");
    if !plant.is_empty() {
        // Lets tests that only make sense with a plant (`tests/sim.rs`) compile only then.
        println!("cargo::rustc-cfg=corum_plant");
    }
}
