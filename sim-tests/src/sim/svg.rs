//! A hand-written SVG timeline of one run: fault windows as shaded bands, every request as a
//! dot at (start time, simulated latency) coloured by outcome (a ring for a call a workload
//! made, a disc for a client request), ejections as red ticks, config pushes as blue ones.

use std::fmt::Write;

use super::report::RunReport;

const W: f64 = 1000.0;
const H: f64 = 434.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 30.0;
const PLOT_H: f64 = 300.0;

/// The SVG document for `report` (which must have been run with a timeline).
pub fn timeline_svg(report: &RunReport) -> String {
    let mut s = String::new();
    let Some(t) = &report.timeline else {
        return "<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_string();
    };
    let end = report.sim_time.as_secs_f64().max(1e-3);
    let max_lat = t
        .requests
        .iter()
        .map(|r| r.latency.as_secs_f64())
        .fold(1e-3, f64::max);
    let x = |secs: f64| LEFT + (secs / end) * (W - LEFT - 20.0);
    let y = |lat: f64| TOP + PLOT_H - (lat / max_lat) * PLOT_H;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="monospace" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="18">seed {} — {} requests ({} of them workloads' calls), p50 {:.1} ms, p99 {:.1} ms, {} ejections, {} config pushes, {} violations</text>"#,
        report.seed,
        report.requests,
        report.calls,
        report.quantile(0.5).as_secs_f64() * 1e3,
        report.quantile(0.99).as_secs_f64() * 1e3,
        report.ejections,
        t.pushes.len(),
        report.violations.len()
    );
    for (i, f) in t.faults.iter().enumerate() {
        let (x0, x1) = (
            x(f.from.as_nanos() as f64 / 1e9),
            x(f.until.as_nanos() as f64 / 1e9),
        );
        let w = (x1 - x0).max(1.0);
        let band_y = TOP + PLOT_H + 20.0 + (i % 6) as f64 * 10.0;
        let label = xml_escape(&f.label);
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{TOP}" width="{w:.1}" height="{PLOT_H}" fill="orange" fill-opacity="0.08"><title>{label}</title></rect>"#
        );
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{band_y:.1}" width="{w:.1}" height="8" fill="orange"><title>{label}</title></rect>"#
        );
    }
    for r in &t.requests {
        let colour = if r.ok {
            "#2a7"
        } else if r.mesh_error {
            "#d33"
        } else {
            "#888"
        };
        let (cx, cy) = (
            x(r.start.as_nanos() as f64 / 1e9),
            y(r.latency.as_secs_f64()),
        );
        let _ = if r.call {
            writeln!(
                s,
                r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="1.8" fill="none" stroke="{colour}" stroke-width="0.6"/>"#
            )
        } else {
            writeln!(
                s,
                r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="1.6" fill="{colour}"/>"#
            )
        };
    }
    for (at, label) in &t.ejections {
        let xe = x(at.as_nanos() as f64 / 1e9);
        let _ = writeln!(
            s,
            r#"<line x1="{xe:.1}" y1="{TOP}" x2="{xe:.1}" y2="{:.1}" stroke="red" stroke-width="0.6"><title>ejected {}</title></line>"#,
            TOP + 8.0,
            xml_escape(label)
        );
    }
    for (at, label) in &t.pushes {
        let xp = x(at.as_nanos() as f64 / 1e9);
        let _ = writeln!(
            s,
            r#"<line x1="{xp:.1}" y1="{:.1}" x2="{xp:.1}" y2="{:.1}" stroke="blue" stroke-width="0.8"><title>{}</title></line>"#,
            TOP + 10.0,
            TOP + 20.0,
            xml_escape(label)
        );
    }
    let axis_y = TOP + PLOT_H;
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{axis_y}" stroke="black"/>"#,
        W - 20.0
    );
    let _ = writeln!(
        s,
        r#"<text x="4" y="{}">{:.0} ms</text><text x="4" y="{axis_y}">0</text><text x="{}" y="{}">{:.2} s</text>"#,
        TOP + 4.0,
        max_lat * 1e3,
        W - 80.0,
        axis_y + 14.0,
        end
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}">green: server answered (&lt;500), red: mesh error, grey: 5xx/cut/timeout; disc: a client's request, ring: a workload's call</text>"#,
        H - 22.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}">orange: fault windows (hover for which); red tick: an ejection; blue tick: a config push reaching a sidecar</text>"#,
        H - 8.0
    );
    s.push_str("</svg>\n");
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
