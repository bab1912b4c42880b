//! The layouts pilot computes, restated from
//! pilot/pkg/networking/core/loadbalancer/loadbalancer_test.go (TestApplyLocalitySetting,
//! TestGetEffectiveLbSetting).

use super::*;
use crate::istio::destination_rule::LocalityDistribute;

fn site(locality: &str) -> (Option<String>, BTreeMap<String, String>) {
    let l = (!locality.is_empty()).then(|| locality.to_string());
    (l, BTreeMap::new())
}

/// buildFakeCluster's localities, one endpoint each (weight 1).
fn fake_cluster() -> Vec<(Option<String>, BTreeMap<String, String>)> {
    [
        "region1/zone1/subzone1",
        "region1/zone1/subzone1",
        "region1/zone1/subzone2",
        "region1/zone1/subzone3",
        "region1/zone2",
        "region2",
        "region3",
    ]
    .iter()
    .map(|l| site(l))
    .collect()
}

fn sites(raw: &[(Option<String>, BTreeMap<String, String>)]) -> Vec<EndpointSite<'_>> {
    raw.iter()
        .map(|(l, labels)| EndpointSite {
            locality: l.as_deref(),
            labels,
            weight: 1,
        })
        .collect()
}

fn proxy(labels: &BTreeMap<String, String>) -> ProxySite<'_> {
    ProxySite {
        locality: Locality::parse("region1/zone1/subzone1"),
        labels,
    }
}

/// Priority of each input endpoint in the layout (None: dropped).
fn priorities(layout: &Layout) -> Vec<Option<u32>> {
    let mut kept_index = 0;
    layout
        .keep
        .iter()
        .map(|&k| {
            if !k {
                return None;
            }
            let i = kept_index;
            kept_index += 1;
            layout
                .lb
                .groups
                .iter()
                .find(|g| g.hosts.contains(&i))
                .map(|g| g.priority)
        })
        .collect()
}

#[test]
fn distribute_between_subzones_weights_the_named_localities_and_drops_the_rest() {
    let setting = LocalityLbSetting {
        distribute: vec![LocalityDistribute {
            from: "region1/zone1/subzone1".into(),
            to: [
                ("region1/zone1/subzone1".to_string(), 80),
                ("region1/zone1/subzone2".to_string(), 15),
                ("region1/zone1/subzone3".to_string(), 5),
            ]
            .into(),
        }],
        ..LocalityLbSetting::default()
    };
    let raw = fake_cluster();
    let none = BTreeMap::new();
    let layout = layout(Some(&setting), true, &proxy(&none), &sites(&raw)).expect("a layout");
    // Istio: weights [40, 40, 15, 5] over its two subzone1 entries; here subzone1 is one
    // group of two endpoints weighing 80.
    let weights: Vec<(String, u32)> = layout
        .lb
        .groups
        .iter()
        .map(|g| (g.locality.clone(), g.weight))
        .collect();
    assert_eq!(
        weights,
        vec![
            ("region1/zone1/subzone1".to_string(), 80),
            ("region1/zone1/subzone2".to_string(), 15),
            ("region1/zone1/subzone3".to_string(), 5),
        ]
    );
    assert_eq!(
        layout.keep,
        vec![true, true, true, true, false, false, false]
    );
    assert!(layout.lb.weighted);
}

#[test]
fn failover_gives_every_proximity_its_priority() {
    // "Failover: all priorities": failover region1 → region2.
    let setting = LocalityLbSetting {
        failover: vec![LocalityFailover {
            from: "region1".into(),
            to: "region2".into(),
        }],
        ..LocalityLbSetting::default()
    };
    let raw = fake_cluster();
    let none = BTreeMap::new();
    let layout = layout(Some(&setting), true, &proxy(&none), &sites(&raw)).expect("a layout");
    assert_eq!(
        priorities(&layout),
        vec![
            Some(0),
            Some(0),
            Some(1),
            Some(1),
            Some(2),
            Some(3),
            Some(4)
        ]
    );
    assert!(
        layout.lb.weighted,
        "explicit failover sets locality weighting"
    );
}

#[test]
fn failover_priorities_are_compacted_and_unknown_localities_sink() {
    // "Failover: priorities with some nil localities": subzone2 → 0, region2 → 1, none → 2.
    let setting = LocalityLbSetting {
        failover: vec![LocalityFailover {
            from: "region1".into(),
            to: "region2".into(),
        }],
        ..LocalityLbSetting::default()
    };
    let raw: Vec<_> = ["region1/zone1/subzone2", "region2/zone1/subzone2", ""]
        .iter()
        .map(|l| site(l))
        .collect();
    let none = BTreeMap::new();
    let layout = layout(Some(&setting), true, &proxy(&none), &sites(&raw)).expect("a layout");
    assert_eq!(priorities(&layout), vec![Some(0), Some(1), Some(2)]);
}

#[test]
fn the_mesh_default_fails_over_only_with_outlier_detection() {
    let default = effective_setting(None).expect("mesh default on");
    let raw = fake_cluster();
    let none = BTreeMap::new();
    assert_eq!(
        layout(Some(&default), false, &proxy(&none), &sites(&raw)),
        None
    );
    let layered = layout(Some(&default), true, &proxy(&none), &sites(&raw)).expect("layers");
    // No explicit failover: region2 and region3 are both "elsewhere" (3 → compacted 3).
    assert_eq!(
        priorities(&layered),
        vec![
            Some(0),
            Some(0),
            Some(1),
            Some(1),
            Some(2),
            Some(3),
            Some(3)
        ]
    );
    assert!(
        !layered.lb.weighted,
        "the default does not weight localities"
    );
    // `enabled: false` turns it off entirely (GetEffectiveLbSetting returns nil).
    let off = LocalityLbSetting {
        enabled: Some(false),
        ..LocalityLbSetting::default()
    };
    assert_eq!(effective_setting(Some(&off)), None);
}

#[test]
fn endpoints_all_in_the_proxys_locality_need_no_layout() {
    let default = effective_setting(None);
    let raw: Vec<_> = ["region1/zone1/subzone1"; 3]
        .iter()
        .map(|l| site(l))
        .collect();
    let none = BTreeMap::new();
    assert_eq!(
        layout(default.as_ref(), true, &proxy(&none), &sites(&raw)),
        None
    );
}

#[test]
fn failover_priority_splits_localities_by_label_match() {
    // "match network label": proxy network n1, cluster test; endpoints alternate n1/n2
    // networks, all in cluster test... here: first label network (may be ignored), second
    // cluster.
    let label = |net: &str, cluster: &str| -> BTreeMap<String, String> {
        [
            ("topology.istio.io/network".to_string(), net.to_string()),
            ("topology.istio.io/cluster".to_string(), cluster.to_string()),
        ]
        .into()
    };
    let raw = vec![
        (
            Some("region1/zone1/subzone1".to_string()),
            label("n1", "c1"),
        ),
        (
            Some("region1/zone1/subzone1".to_string()),
            label("n2", "c2"),
        ),
        (
            Some("region2/zone2/subzone2".to_string()),
            label("n1", "c1"),
        ),
        (
            Some("region2/zone2/subzone2".to_string()),
            label("n2", "c2"),
        ),
    ];
    let proxy_labels = label("n1", "test");
    let setting = LocalityLbSetting {
        failover_priority: vec![
            "topology.istio.io/network".into(),
            "topology.istio.io/cluster".into(),
        ],
        ..LocalityLbSetting::default()
    };
    let layout = layout(Some(&setting), true, &proxy(&proxy_labels), &sites(&raw)).unwrap();
    // network match, cluster mismatch → priority 1; network mismatch (ignored, +2) and
    // cluster mismatch (1) → 3; compacted: 0 and 1.
    assert_eq!(
        priorities(&layout),
        vec![Some(0), Some(1), Some(0), Some(1)]
    );
}

#[test]
fn locality_labels_use_dots_for_slashes() {
    let labels: BTreeMap<String, String> =
        [("istio-locality".to_string(), "us-east.zone-a".to_string())].into();
    assert_eq!(
        locality_from_labels(&labels).as_deref(),
        Some("us-east/zone-a")
    );
    let both: BTreeMap<String, String> = [
        ("istio-locality".to_string(), "old".to_string()),
        (
            "topology.istio.io/locality".to_string(),
            "new.z".to_string(),
        ),
    ]
    .into();
    assert_eq!(locality_from_labels(&both).as_deref(), Some("new/z"));
}

#[test]
fn validation_follows_istio() {
    let check = |s: &LocalityLbSetting, outlier: bool| {
        let mut diags = Vec::new();
        let ok = validate(
            s,
            outlier,
            "spec.trafficPolicy.loadBalancer.localityLbSetting",
            &mut diags,
        );
        (
            ok,
            diags.iter().map(|d| d.message.clone()).collect::<Vec<_>>(),
        )
    };
    let distribute = |to: &[(&str, u32)]| LocalityLbSetting {
        distribute: vec![LocalityDistribute {
            from: "us-east/*".into(),
            to: to.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }],
        ..LocalityLbSetting::default()
    };
    assert_eq!(
        check(&distribute(&[("a/*", 60), ("b", 40)]), false),
        (true, vec![])
    );
    assert_eq!(
        check(&distribute(&[("a", 60), ("b", 30)]), false),
        (false, vec!["total locality weight 90 != 100".to_string()])
    );
    assert!(!check(&distribute(&[("a/*/z", 100)]), false).0);
    let failover = |from: &str, to: &str| LocalityLbSetting {
        failover: vec![LocalityFailover {
            from: from.into(),
            to: to.into(),
        }],
        ..LocalityLbSetting::default()
    };
    assert_eq!(
        check(&failover("us-east", "us-west"), false),
        (
            true,
            vec!["outlier detection policy must be provided for failover".to_string()]
        )
    );
    assert!(!check(&failover("us-east", "us-east"), true).0);
    assert!(!check(&failover("us-east/a", "us-west"), true).0);
    let mut both = failover("us-east", "us-west");
    both.distribute = distribute(&[("a", 100)]).distribute;
    assert!(!check(&both, true).0);
}
