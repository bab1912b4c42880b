//! RFC 6902 JSON Patch between two documents: what the admission webhook returns.
//!
//! Istio's webhook marshals the pod before and after injection and diffs the two with
//! `jsonpatch.CreatePatch` (gomodules.xyz/jsonpatch, called from `createPatch` in
//! pkg/kube/inject/webhook.go); the API server applies the patch to the pod it holds. This is
//! the same contract: `apply(before, diff(before, after)) == after` for any two documents.
//!
//! Objects are diffed key by key (`remove` for keys that went, `add` for new ones, recursion for
//! both). Arrays are aligned on their longest common subsequence of equal elements, so a
//! container inserted in front of the others is one `add` at `/spec/containers/0`, not a
//! replacement of every container after it; unmatched runs between two anchors are paired up
//! and diffed in place, and the rest added or removed. Operations are emitted in the order a
//! patch applier runs them, with each array index as it is at that moment.

use serde_json::{json, Value};

/// One operation of a JSON Patch, in its JSON form (`{"op": ..., "path": ..., "value": ...}`).
pub type PatchOperation = Value;

/// The operations turning `before` into `after` (empty when they are equal).
pub fn diff(before: &Value, after: &Value) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    diff_at("", before, after, &mut ops);
    ops
}

/// RFC 6901 escaping of one path segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn diff_at(path: &str, before: &Value, after: &Value, ops: &mut Vec<PatchOperation>) {
    match (before, after) {
        _ if before == after => {}
        (Value::Object(old), Value::Object(new)) => {
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                ops.push(json!({"op": "remove", "path": format!("{path}/{}", escape(key))}));
            }
            for (key, value) in new {
                let child = format!("{path}/{}", escape(key));
                match old.get(key) {
                    Some(previous) => diff_at(&child, previous, value, ops),
                    None => ops.push(json!({"op": "add", "path": child, "value": value})),
                }
            }
        }
        (Value::Array(old), Value::Array(new)) => diff_arrays(path, old, new, ops),
        _ => ops.push(json!({"op": "replace", "path": path, "value": after})),
    }
}

/// Index pairs of a longest common subsequence of equal elements, in order.
fn common_subsequence(old: &[Value], new: &[Value]) -> Vec<(usize, usize)> {
    // lengths[i][j]: the LCS length of old[i..] and new[j..].
    let mut lengths = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            lengths[i][j] = if old[i] == new[j] {
                lengths[i + 1][j + 1] + 1
            } else {
                lengths[i + 1][j].max(lengths[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut pairs = Vec::with_capacity(lengths[0][0]);
    while i < old.len() && j < new.len() {
        if old[i] == new[j] {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if lengths[i + 1][j] >= lengths[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

fn diff_arrays(path: &str, old: &[Value], new: &[Value], ops: &mut Vec<PatchOperation>) {
    let mut anchors = common_subsequence(old, new);
    anchors.push((old.len(), new.len()));
    // `at`: the index in the array as the patch has left it so far.
    let (mut at, mut i, mut j) = (0usize, 0usize, 0usize);
    for (anchor_old, anchor_new) in anchors {
        let old_run = &old[i..anchor_old];
        let new_run = &new[j..anchor_new];
        let paired = old_run.len().min(new_run.len());
        for k in 0..paired {
            diff_at(&format!("{path}/{at}"), &old_run[k], &new_run[k], ops);
            at += 1;
        }
        for _ in paired..old_run.len() {
            ops.push(json!({"op": "remove", "path": format!("{path}/{at}")}));
        }
        for value in &new_run[paired..] {
            ops.push(json!({"op": "add", "path": format!("{path}/{at}"), "value": value}));
            at += 1;
        }
        // The anchor itself is equal on both sides.
        at += 1;
        i = anchor_old + 1;
        j = anchor_new + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal RFC 6902 applier for the operations `diff` emits, to check the round trip
    /// here; the integration test applies the webhook's patches with Python's `jsonpatch`.
    fn apply(doc: &mut Value, ops: &[PatchOperation]) {
        for op in ops {
            let path = op["path"].as_str().expect("path");
            let (parent_path, last) = path.rsplit_once('/').expect("non-root path");
            let last = last.replace("~1", "/").replace("~0", "~");
            let parent = if parent_path.is_empty() {
                &mut *doc
            } else {
                doc.pointer_mut(parent_path).expect("parent exists")
            };
            match (op["op"].as_str(), parent) {
                (Some("add"), Value::Array(a)) => {
                    a.insert(last.parse().expect("index"), op["value"].clone())
                }
                (Some("remove"), Value::Array(a)) => {
                    a.remove(last.parse().expect("index"));
                }
                (Some("replace"), Value::Array(a)) => {
                    a[last.parse::<usize>().expect("index")] = op["value"].clone()
                }
                (Some("add" | "replace"), Value::Object(m)) => {
                    m.insert(last, op["value"].clone());
                }
                (Some("remove"), Value::Object(m)) => {
                    m.remove(&last);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn round_trip(before: Value, after: Value) -> Vec<PatchOperation> {
        let ops = diff(&before, &after);
        let mut patched = before;
        apply(&mut patched, &ops);
        assert_eq!(patched, after, "ops: {ops:#?}");
        ops
    }

    #[test]
    fn a_container_put_first_is_one_add_at_index_zero() {
        let ops = round_trip(
            json!({"spec": {"containers": [{"name": "app"}]}}),
            json!({"spec": {"containers": [{"name": "istio-proxy"}, {"name": "app"}]}}),
        );
        assert_eq!(
            ops,
            vec![
                json!({"op": "add", "path": "/spec/containers/0", "value": {"name": "istio-proxy"}})
            ]
        );
    }

    #[test]
    fn keys_with_slashes_are_escaped_and_changes_recurse() {
        let ops = round_trip(
            json!({"metadata": {"annotations": {"a": "1"}}, "x": [1, 2, 3], "gone": true}),
            json!({"metadata": {"annotations": {"a": "1", "sidecar.istio.io/status": "{}"}},
                   "x": [1, 9, 3, 4]}),
        );
        assert!(ops.contains(&json!({"op": "add",
            "path": "/metadata/annotations/sidecar.istio.io~1status", "value": "{}"})));
    }

    #[quickcheck_macros::quickcheck]
    fn applying_the_diff_gives_the_target(a: Vec<u8>, b: Vec<u8>, keys: Vec<(u8, u8)>) -> bool {
        let to_value = |v: &[u8]| Value::Array(v.iter().map(|n| json!(n % 5)).collect());
        let object = |pairs: &[(u8, u8)], salt: u8| {
            Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (format!("k/{}", k % 4), json!([v % 3, salt])))
                    .collect(),
            )
        };
        let before = json!({"list": to_value(&a), "map": object(&keys, 0)});
        let after = json!({"list": to_value(&b), "map": object(&keys[keys.len() / 2..], 1)});
        let ops = diff(&before, &after);
        let mut patched = before;
        apply(&mut patched, &ops);
        patched == after
    }
}
