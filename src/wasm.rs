//! proxy-wasm glue: implements `Host` over host calls and wires the contexts.
//! No policy lives here.

use crate::compat::{startup_lines, EnvoyVersion};
use crate::filter::{Filter, Verdict};
use crate::host::{Host, HostError};
use crate::policy::config::Config;
use crate::policy::rules::label;
use crate::reply::stats::{Counter, PendingCounts};
use crate::reply::Reply;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType, MetricType, Status};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// How often counted outcomes are flushed to Envoy stats.
const FLUSH_PERIOD: Duration = Duration::from_secs(1);

proxy_wasm::main! {{
    // The `log` facade into Envoy's log; Envoy's own level filters it further.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(PluginRoot::default()));
}}

struct WasmHost;

fn host_error(status: Status) -> HostError {
    match status {
        Status::SerializationFailure => HostError::SerializationFailure,
        Status::CasMismatch => HostError::CasMismatch,
        other => HostError::Failure(format!("{other:?}")),
    }
}

impl Host for WasmHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        match hostcalls::get_property(path.to_vec()) {
            Ok(Some(value)) if value.is_empty() => Ok(None),
            Ok(value) => Ok(value),
            Err(status) => Err(host_error(status)),
        }
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None).map_err(host_error)
    }

    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(host_error)
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        match hostcalls::get_shared_data(key) {
            Ok(found) => Ok(found),
            Err(status) => Err(host_error(status)),
        }
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(host_error)
    }

    fn now(&self) -> Result<SystemTime, HostError> {
        hostcalls::get_current_time().map_err(host_error)
    }

    fn call_foreign_function(
        &self,
        name: &str,
        argument: &[u8],
    ) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::call_foreign_function(name, Some(argument)).map_err(host_error)
    }

    fn send_reply(&self, reply: &Reply) -> Result<(), HostError> {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let headers = serialize_map(&headers);
        // The raw call: the SDK's `send_http_response` passes no details, and
        // panics (trapping the VM) on a status it did not expect.
        let status = unsafe {
            proxy_send_local_response(
                reply.status,
                reply.details.as_ptr(),
                reply.details.len(),
                reply.body.as_ptr(),
                reply.body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        };
        status_result(status)
    }

    fn set_filter_state(&self, name: &str, value: &str) -> Result<(), HostError> {
        // A one-segment property path is the name itself; Envoy stores it
        // as filter state `wasm.<name>`. Raw for the same reason as above.
        let status =
            unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
        status_result(status)
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

/// A raw proxy-wasm status: 0 is Ok.
fn status_result(status: u32) -> Result<(), HostError> {
    match status {
        0 => Ok(()),
        other => Err(HostError::Failure(format!("status {other}"))),
    }
}

/// proxy-wasm's map encoding: the count, each name and value length, then
/// each name and value, NUL-terminated (all lengths little-endian u32).
fn serialize_map(map: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(
        4 + map
            .iter()
            .map(|(name, value)| name.len() + value.len() + 10)
            .sum::<usize>(),
    );
    bytes.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (name, value) in map {
        bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in map {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// Per-VM state shared by the root context and every request it creates.
struct Plugin {
    filter: Filter,
    counts: PendingCounts,
    /// Envoy metric ids, in `Counter::all()` order.
    metrics: Vec<(Counter, u32)>,
}

#[derive(Default)]
struct PluginRoot {
    plugin: Option<Rc<Plugin>>,
}

impl Context for PluginRoot {}

impl RootContext for PluginRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let config = match Config::parse(&raw) {
            Ok(config) => config,
            Err(error) => {
                log::error!("{error}; the plugin will not start");
                return false;
            }
        };
        let mut metrics = Vec::new();
        for counter in Counter::all() {
            let name = counter.metric_name(&config.stat_prefix);
            match hostcalls::define_metric(MetricType::Counter, &name) {
                Ok(id) => metrics.push((counter, id)),
                Err(status) => {
                    log::error!(
                        "cannot define metric {name}: {status:?}; the plugin will not start"
                    );
                    return false;
                }
            }
        }
        if let Err(status) = hostcalls::set_tick_period(FLUSH_PERIOD) {
            log::error!("cannot start the stats timer: {status:?}; the plugin will not start");
            return false;
        }
        log::info!("configured: {config}");
        for (index, rule) in config.rules.iter().enumerate() {
            log::info!("{}: {rule}", label(rule, index));
        }
        for warning in config.warnings() {
            log::warn!("{}", warning);
        }
        // What this Envoy cannot give the configured features, said once.
        let envoy = startup_lines(&config, EnvoyVersion::read(&WasmHost));
        log::info!("{}", envoy.info);
        for warning in envoy.warnings {
            log::warn!("{}", warning);
        }
        let nonces = config.dpop.nonce.enabled;
        let mut filter = Filter::new(config);
        for line in filter.probe_native_signatures(&WasmHost) {
            log::info!("{}", line);
        }
        if nonces {
            if let Err(error) = filter.dpop().nonce_key.ensure(&WasmHost) {
                log::error!("cannot set up the DPoP nonce key: {error}; the plugin will not start");
                return false;
            }
        }
        self.plugin = Some(Rc::new(Plugin {
            filter,
            counts: PendingCounts::default(),
            metrics,
        }));
        true
    }

    fn on_tick(&mut self) {
        let Some(plugin) = &self.plugin else { return };
        for (counter, count) in plugin.counts.drain() {
            let id = plugin
                .metrics
                .iter()
                .find(|(c, _)| *c == counter)
                .map(|(_, id)| *id);
            if let Some(id) = id {
                let offset = i64::try_from(count).unwrap_or(i64::MAX);
                if let Err(status) = hostcalls::increment_metric(id, offset) {
                    log::warn!("cannot update a metric: {status:?}");
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestContext {
            plugin: self.plugin.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RequestContext {
    plugin: Option<Rc<Plugin>>,
}

impl Context for RequestContext {}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(plugin) = &self.plugin else {
            // Unreachable when Envoy honours a failed on_configure; deny regardless.
            log::error!("request reached an unconfigured plugin; denying");
            let _ = WasmHost.send_reply(&Reply {
                status: 500,
                headers: Vec::new(),
                body: Vec::new(),
                details: "cnf_guard.unconfigured".to_owned(),
            });
            return Action::Pause;
        };
        match plugin.filter.on_request_headers(&WasmHost, &plugin.counts) {
            Verdict::Continue => Action::Continue,
            Verdict::Stop => Action::Pause,
        }
    }
}
