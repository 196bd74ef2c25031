//! The plugin configuration parser on arbitrary bytes: errors always name a
//! field, and an accepted configuration can be summarised, warned about and
//! resolved for any request without panicking.
#![no_main]

use cnf_guard::policy::config::Config;
use cnf_guard::policy::rules::RequestFacts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Config::parse(data) {
        Err(error) => assert!(!error.field.is_empty()),
        Ok(config) => {
            let _ = config.to_string();
            let _ = config.warnings();
            for rule in &config.rules {
                let _ = rule.to_string();
            }
            let request = RequestFacts {
                route: Some("admin".to_owned()),
                path: Some("/admin/users".to_owned()),
                method: Some("POST".to_owned()),
            };
            let _ = config.resolve(&request);
            let _ = config.resolve(&RequestFacts::default());
        }
    }
});
