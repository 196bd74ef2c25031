//! A `log` backend that keeps what the current thread logged, for the fake
//! hosts: the unit tests' mock asks what a request logged, and the CLI prints
//! the filter's log lines for the request it emulates. In the module,
//! proxy-wasm's own logger sends the same lines to Envoy's log.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LINES: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _metadata: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        LINES.with(|lines| {
            lines
                .borrow_mut()
                .push((record.level(), record.args().to_string()))
        });
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;
static INSTALL: Once = Once::new();

/// Makes this the process's logger (once; later calls do nothing).
pub fn install() {
    INSTALL.call_once(|| {
        if log::set_logger(&CAPTURE).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
    });
}

/// Everything this thread logged since the last `take`, oldest first.
pub fn take() -> Vec<(log::Level, String)> {
    LINES.with(|lines| std::mem::take(&mut *lines.borrow_mut()))
}

/// Whether a line this thread logged (and nobody took) contains `needle`.
pub fn contains(needle: &str) -> bool {
    LINES.with(|lines| lines.borrow().iter().any(|(_, line)| line.contains(needle)))
}
