//! corum's loom suite lives in `tests/`; see the repository README, section "Verification".
