//! The Wasm export: reads the route's config and applies [`crate::Edits`].

use crate::{parse_config, Edit, Edits};
use edge_module_sdk::{export_module, log, Action, Module, Request, Response};

struct Headers;

impl Module for Headers {
    const NAME: &'static str = "headers";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn on_request(req: &Request) -> Action {
        let config = match parse_config(&edge_module_sdk::bindings::edge::module::config::get()) {
            Ok(config) => config,
            // A config error must not pass silently: fail the request (the route's
            // `on_error` decides whether that is a 5xx or a pass-through).
            Err(e) => panic!("{e}"),
        };
        for edit in Edits::request(&config) {
            let applied = match edit {
                Edit::Remove(name) => {
                    req.remove_header(name);
                    Ok(())
                }
                Edit::Set(name, value) => req.set_header(name, value),
            };
            if let Err(e) = applied {
                log::warn(&e);
            }
        }
        Action::Continue
    }

    fn on_response(_req: &Request, resp: &Response) {
        let Ok(config) = parse_config(&edge_module_sdk::bindings::edge::module::config::get())
        else {
            return;
        };
        for edit in Edits::response(&config) {
            let applied = match edit {
                Edit::Remove(name) => {
                    resp.remove_header(name);
                    Ok(())
                }
                Edit::Set(name, value) => resp.set_header(name, value),
            };
            if let Err(e) = applied {
                log::warn(&e);
            }
        }
    }
}

export_module!(Headers);
