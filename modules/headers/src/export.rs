//! The Wasm export: reads the route's config and applies [`crate::Edits`].

use crate::{parse_config, Config, Edit, Edits};
use edge_module_sdk::{export_module, log, Action, Module, Request, Response};

struct Headers;

fn config() -> Config {
    match parse_config(&edge_module_sdk::bindings::edge::module::config::get()) {
        Ok(config) => config,
        // A config error must not pass silently: fail the request (the route's
        // `on_error` decides whether that is a 5xx or a pass-through).
        Err(e) => panic!("{e}"),
    }
}

/// Applies edits through the resource's own functions; a refused field (one the node
/// manages, or an invalid value) is logged and skipped.
fn apply(
    edits: Vec<Edit<'_>>,
    remove: impl Fn(&str),
    set: impl Fn(&str, &str) -> Result<(), String>,
) {
    for edit in edits {
        match edit {
            Edit::Remove(name) => remove(name),
            Edit::Set(name, value) => {
                if let Err(e) = set(name, value) {
                    log::warn(&e);
                }
            }
        }
    }
}

impl Module for Headers {
    const NAME: &'static str = "headers";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn on_request(req: &Request) -> Action {
        let config = config();
        apply(
            Edits::request(&config),
            |name| req.remove_header(name),
            |name, value| req.set_header(name, value),
        );
        if config.response_set.is_empty() && config.response_remove.is_empty() {
            // Nothing to do on the response: the node skips the response hook.
            return Action::Done;
        }
        Action::Continue
    }

    fn on_response(_req: &Request, resp: &Response) {
        let config = config();
        apply(
            Edits::response(&config),
            |name| resp.remove_header(name),
            |name, value| resp.set_header(name, value),
        );
    }
}

export_module!(Headers);
