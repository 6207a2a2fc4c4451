//! `containerd-shim-stasis-v2`: containerd's runtime `io.containerd.stasis.v2`.
#![forbid(unsafe_code)]

fn main() {
    containerd_shim::run::<containerd_shim_stasis_v2::shim::StasisShim>(
        containerd_shim_stasis_v2::RUNTIME_ID,
        None,
    );
}
