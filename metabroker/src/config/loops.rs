//! The 3.1.1 loop rule: MQTT 3.1.1 has no no-local subscription option and no user
//! properties, so on a 3.1.1 side neither the broker nor the hop marker stops a forwarded
//! message from coming straight back. Instead, route sets that could let that happen are
//! refused at load time.
//!
//! Owns: deciding, from the routes alone, whether anything the bridge publishes on a 3.1.1
//! side can match what it subscribes there. Must never touch the network or the disk.

use super::{BridgeConfig, Direction, Protocol, RouteConfig};

/// How a route is named in errors: its configuration index, or the hierarchy route.
fn name(routes_len: usize, i: usize, r: &RouteConfig) -> String {
    let dir = match r.direction {
        Direction::In => "in",
        Direction::Out => "out",
        Direction::Both => "both",
    };
    if i < routes_len {
        format!("route[{i}] ({dir} {:?})", r.local)
    } else {
        format!("hierarchy route ({dir} {:?})", r.local)
    }
}

fn key(routes_len: usize, i: usize, side: &str) -> String {
    if i < routes_len {
        format!("route[{i}]")
    } else {
        format!("{side}.protocol")
    }
}

/// Refuses, for each 3.1.1 side, every pair (publishing route, subscribing route) whose
/// topics overlap on that side (a `both` route pairs with itself), and on a 3.1.1 local side
/// an outgoing filter that covers the bridge's own state topics.
pub(super) fn check_311(config: &BridgeConfig) -> Result<(), (String, String)> {
    let routes = config.effective_routes();
    let n = config.routes.len();
    let sends_out = |r: &RouteConfig| r.direction != Direction::In;
    let sends_in = |r: &RouteConfig| r.direction != Direction::Out;
    if config.remote.protocol == Protocol::V311 {
        // On the remote: out routes publish their remapped topics, in routes subscribe the
        // reversed filter.
        for (i, out) in routes.iter().enumerate().filter(|(_, r)| sends_out(r)) {
            let Ok(map) = out.remap() else { continue };
            for (j, inn) in routes.iter().enumerate().filter(|(_, r)| sends_in(r)) {
                let Ok(back) = inn.remap().and_then(|m| m.reverse()) else {
                    continue;
                };
                if map.image_overlaps(&back.filter()) {
                    return Err((
                        key(n, i.max(j), "remote"),
                        refusal(n, i, out, j, inn, "remote", &back.filter()),
                    ));
                }
            }
        }
    }
    if config.local.protocol == Protocol::V311 {
        // On the local broker: in routes publish topics matching their `local` filter, out
        // routes subscribe it.
        let state = format!("{}/{}/#", config.state_prefix, config.name);
        for (j, out) in routes.iter().enumerate().filter(|(_, r)| sends_out(r)) {
            for (i, inn) in routes.iter().enumerate().filter(|(_, r)| sends_in(r)) {
                if crate::remap::filters_overlap(&inn.local, &out.local) {
                    return Err((
                        key(n, i.max(j), "local"),
                        refusal(n, j, out, i, inn, "local", &out.local),
                    ));
                }
            }
            if crate::remap::filters_overlap(&out.local, &state) {
                return Err((
                    key(n, j, "local"),
                    format!(
                        "{} covers the bridge's own state topics {state:?} on the 3.1.1 \
                         local broker, which has no no-local: narrow the filter or move \
                         state_prefix",
                        name(n, j, out)
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn refusal(
    n: usize,
    out_i: usize,
    out: &RouteConfig,
    in_i: usize,
    inn: &RouteConfig,
    side: &str,
    filter: &str,
) -> String {
    let what = if out_i == in_i {
        format!("{} forwards both ways", name(n, out_i, out))
    } else {
        format!("{} and {} overlap", name(n, out_i, out), name(n, in_i, inn))
    };
    format!(
        "{what} on the MQTT 3.1.1 {side} broker (subscription {filter:?}): 3.1.1 has no \
         no-local and no hop marker, so forwarded messages would come back; use disjoint \
         topics or prefixes per direction"
    )
}
