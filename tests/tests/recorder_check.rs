//! A router built while no metrics recorder is installed would record nothing; the
//! builder says so in a warning instead of staying silent. (No test in this binary
//! installs the global recorder: it is one per process.)

use std::io;
use std::sync::{Arc, Mutex};

use gateway_model::RouteConfig;
use gateway_sim::Sim;
use gateway_telemetry::LocalMetrics;
use gateway_tests::{config_for, router_for};
use tracing_subscriber::fmt::MakeWriter;

/// Log output, collected in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// What building a router logs on this thread, inside `local`'s scope if given, after
/// `without_recorder_check` if `skip_check`.
fn logged_while_building(local: Option<&LocalMetrics>, skip_check: bool) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let build = || {
        runtime.block_on(async {
            let sim = Sim::builder().start().await.unwrap();
            let config = config_for(&sim).with_route("s", RouteConfig::to_model("model-gen-4"));
            let mut builder = router_for(config);
            if skip_check {
                builder = builder.without_recorder_check();
            }
            builder.build().await.unwrap();
        });
    };
    match local {
        Some(metrics) => metrics.scope(build),
        None => build(),
    }
    String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
}

const WARNING: &str = "no metrics recorder is installed";

#[test]
fn a_router_built_without_a_recorder_warns_that_its_metrics_are_discarded() {
    let logged = logged_while_building(None, false);
    assert!(logged.contains("WARN"), "{logged}");
    assert!(logged.contains(WARNING), "{logged}");
    assert!(logged.contains("gateway_telemetry::install"), "{logged}");
}

#[test]
fn a_router_built_under_a_recorder_or_told_not_to_check_does_not_warn() {
    let metrics = LocalMetrics::new();
    let logged = logged_while_building(Some(&metrics), false);
    assert!(!logged.contains(WARNING), "{logged}");
    let logged = logged_while_building(None, true);
    assert!(!logged.contains(WARNING), "{logged}");
}
