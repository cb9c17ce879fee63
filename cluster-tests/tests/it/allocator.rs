//! The services allocate with jemalloc (docs/PERFORMANCE.md, fix 7), not glibc's malloc: the
//! binaries as built answer jemalloc's own configuration variable, which docs/OPERATIONS.md
//! tells operators to use. `stats_print` makes jemalloc print its statistics when the process
//! exits, here after `--help`.

use std::process::Command;

use cluster_tests::{binaries, process::Service};

#[test]
fn the_services_allocate_with_jemalloc() {
    for service in [Service::Gateway, Service::PaySvc, Service::OrderSvc] {
        let output = Command::new(binaries::path(service).unwrap())
            .arg("--help")
            .env("_RJEM_MALLOC_CONF", "stats_print:true")
            .output()
            .unwrap();
        assert!(output.status.success(), "{service:?} --help failed");
        let printed = [output.stdout, output.stderr].concat();
        let printed = String::from_utf8_lossy(&printed);
        assert!(
            printed.contains("Begin jemalloc statistics"),
            "{service:?} did not print jemalloc's statistics: is its global allocator still \
             jemalloc?"
        );
    }
}
