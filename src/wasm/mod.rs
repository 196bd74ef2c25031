//! proxy-wasm glue: implements `Host` over host calls and wires the contexts.
//! No policy lives here. The request path's host calls are raw ([`abi`]);
//! plugin start and the stats tick use the SDK's wrappers.

mod abi;

use crate::compat::{startup_lines, EnvoyVersion};
use crate::filter::{AwaitingStore, Filter, Verdict};
use crate::host::{Host, HostError};
use crate::policy::config::Config;
use crate::policy::rules::label;
use crate::reply::stats::{Counter, PendingCounts};
use crate::reply::Reply;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MetricType};
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

impl Host for WasmHost {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(abi::get_property(path)?.filter(|value| !value.is_empty()))
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        abi::remove_request_header(name)
    }

    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        abi::request_headers()
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        abi::get_shared_data(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        abi::set_shared_data(key, value, cas)
    }

    fn now(&self) -> Result<SystemTime, HostError> {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(abi::current_time_nanoseconds()?))
    }

    fn call_foreign_function(
        &self,
        name: &str,
        argument: &[u8],
    ) -> Result<Option<Vec<u8>>, HostError> {
        abi::call_foreign_function(name, argument)
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        // The SDK's call, not a raw one: only it registers the token, and
        // its dispatcher traps on an answer to a token it does not know.
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, Vec::new(), timeout).map_err(
            |status| match status {
                proxy_wasm::types::Status::BadArgument => HostError::BadArgument,
                other => HostError::Failure(format!("{other:?}")),
            },
        )
    }

    fn send_reply(&self, reply: &Reply) -> Result<(), HostError> {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        abi::send_local_response(reply.status, &reply.details, &headers, &reply.body)
    }

    fn set_filter_state(&self, name: &str, value: &str) -> Result<(), HostError> {
        // A one-segment property path; Envoy stores it as filter state `wasm.<name>`.
        abi::set_property(name, value.as_bytes())
    }
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

impl Context for PluginRoot {
    /// The answer to the start-up probe of the replay store.
    fn on_http_call_response(&mut self, _call: u32, _headers: usize, body_size: usize, _: usize) {
        let response = abi::http_call_response(body_size).unwrap_or_default();
        if let Some(plugin) = &self.plugin {
            plugin.filter.log_replay_store_probe(&response);
        }
    }
}

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
        // Logged, not fatal: `envoy --mode validate` resolves no cluster for
        // a plugin, so failing here would fail every validation. Each
        // request's call fails the same way meanwhile, and is refused.
        if let Err(error) = filter.probe_replay_store(&WasmHost) {
            log::error!("{error}");
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
            awaiting: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct RequestContext {
    plugin: Option<Rc<Plugin>>,
    /// Set while the request is paused on the replay store.
    awaiting: Option<Box<AwaitingStore>>,
}

impl Context for RequestContext {
    fn on_http_call_response(&mut self, call: u32, _headers: usize, body_size: usize, _: usize) {
        if !matches!(&self.awaiting, Some(awaiting) if awaiting.call == call) {
            // One call per request, and the SDK routes its answer here; any
            // other leaves the request paused (held, not let through).
            log::error!("an HTTP call answer for an unknown call ({call}); holding the request");
            return;
        }
        let (Some(plugin), Some(awaiting)) = (&self.plugin, self.awaiting.take()) else {
            return;
        };
        let response = abi::http_call_response(body_size).unwrap_or_else(|error| {
            log::error!("cannot read the replay store's answer: {error}");
            Default::default()
        });
        let verdict =
            plugin
                .filter
                .on_replay_store_answer(&WasmHost, *awaiting, &response, &plugin.counts);
        if matches!(verdict, Verdict::Continue) {
            if let Err(error) = abi::resume_http_request() {
                log::error!("cannot resume the request: {error}");
            }
        }
    }
}

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
            Verdict::AwaitingReplayStore(awaiting) => {
                self.awaiting = Some(awaiting);
                Action::Pause
            }
        }
    }
}
