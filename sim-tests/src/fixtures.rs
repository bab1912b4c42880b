//! Worlds that several scenario files start from.

use crate::build::{self, add_vhost, cluster, header_exact, route};
use crate::world::{Reply, World};

/// Where bookinfo's three `reviews` versions listen.
pub const V1: &str = "10.0.0.1:9080";
pub const V2: &str = "10.0.0.2:9080";
pub const V3: &str = "10.0.0.3:9080";

/// Bookinfo's `reviews` with the routing of Istio's task "request routing": `end-user: jason`
/// goes to v2, everyone else 80/20 between v1 and v3. Each version answers its name.
pub fn reviews_world(seed: u64) -> World {
    let mut config = build::base();
    config.clusters = vec![
        cluster("reviews-v1", &[(V1, &[("version", "v1")])]),
        cluster("reviews-v2", &[(V2, &[("version", "v2")])]),
        cluster("reviews-v3", &[(V3, &[("version", "v3")])]),
    ];
    add_vhost(
        &mut config,
        "reviews",
        &["reviews", "reviews:9080"],
        vec![
            route(
                "jason",
                vec![header_exact("end-user", "jason")],
                &[("reviews-v2", 100)],
            ),
            route("split", vec![], &[("reviews-v1", 80), ("reviews-v3", 20)]),
        ],
    );
    let mut w = World::new(config, seed);
    w.server(V1, |_| Reply::ok("v1"));
    w.server(V2, |_| Reply::ok("v2"));
    w.server(V3, |_| Reply::ok("v3"));
    w
}
