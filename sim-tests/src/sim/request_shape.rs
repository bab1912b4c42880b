//! The shape of a request in a scenario with the routing vocabulary: method, path (sent
//! dirty or clean), query, authority and headers, each drawn from the scenario's pools.

use super::mesh::Mesh;
use super::model;
use super::scenario::RequestShape;

impl Mesh<'_> {
    /// A request's shape in a scenario with the routing vocabulary (`None` otherwise): each
    /// part drawn from the scenario's pools with the world's RNG. A request with a body is a
    /// `POST` or `PUT` (`with_body`), one without a `GET` or `DELETE`.
    ///
    /// A workload's call (`own_service`) always names its service's own host: a wildcard host
    /// could land on a service earlier in the call graph and make calls loop.
    pub(super) fn draw_shape(
        &mut self,
        service: usize,
        with_body: bool,
        own_service: bool,
    ) -> Option<RequestShape> {
        let vocab = self.scn.requests.as_ref()?;
        let r = &mut self.rng;
        let method = match (with_body, r.u8(0..4)) {
            (true, 0) => "PUT",
            (true, _) => "POST",
            (false, 0) => "DELETE",
            (false, _) => "GET",
        };
        let one = |r: &mut fastrand::Rng, xs: &[String]| -> String {
            xs.get(r.usize(0..xs.len().max(1)))
                .cloned()
                .unwrap_or_default()
        };
        let path = one(r, &vocab.paths);
        let (path, sent_path) = super::path_dirt::draw(r, vocab, path);
        let query = one(r, &vocab.queries);
        let mut suffix = one(r, &vocab.authorities);
        if own_service && !matches!(suffix.as_str(), "" | ":80" | ":8080" | "!upper") {
            suffix.clear();
        }
        let mut headers = Vec::new();
        for (name, values) in &vocab.headers {
            if let Some(Some(v)) = values.get(r.usize(0..values.len().max(1))) {
                headers.push((name.clone(), v.clone()));
            }
        }
        let mut method = method.to_string();
        super::cors::draw(r, vocab, with_body, &mut method, &mut headers);
        Some(RequestShape {
            method,
            path,
            sent_path,
            query,
            authority: match suffix.as_str() {
                "!upper" => model::service_host(service).to_ascii_uppercase(),
                "!unknown" => format!("unknown{service}.example"),
                "!foo" => format!("foo.bar{service}"),
                "!deep" => "x.b.example:8080".to_string(),
                _ => format!("{}{suffix}", model::service_host(service)),
            },
            headers,
        })
    }
}
