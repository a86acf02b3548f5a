//! `compare-plot IN.json OUT.svg`: draws the comparison that `benches/compare.sh --json IN.json`
//! wrote as an SVG bar chart of Canopy's advantage over each peer broker, one row per
//! scenario of the table, on a logarithmic axis centred on parity (1×): a bar to the right
//! means Canopy is better by that factor, to the left worse, whichever way the row counts.
//!
//! Owns the drawing only; must never measure anything or change the figures (rows without a
//! ratio, such as lost-message counts and Canopy-only rows, are left out, as in the table).
//!
//! `cargo run -p canopy-bench --bin compare-plot -- docs/performance-comparison.json
//! docs/performance-comparison.svg` regenerates the chart in docs/performance.md.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;

/// What `compare.sh --json` writes.
#[derive(Deserialize)]
struct Comparison {
    /// How the run was made (pinning, load average).
    mode: String,
    /// Rounds per scenario (the table shows medians).
    rounds: u32,
    /// How long each throughput run took (`"5s"`).
    #[serde(default)]
    duration: String,
    /// The brokers measured, Canopy first.
    brokers: Vec<String>,
    /// The table's rows, in order.
    rows: Vec<Row>,
}

/// One row of the table.
#[derive(Deserialize)]
struct Row {
    /// The row's label, such as `fanin QoS 0, msgs/s`.
    scenario: String,
    /// Canopy's advantage over each peer (> 1: Canopy is better); absent or null: no ratio.
    #[serde(default)]
    ratios: BTreeMap<String, Option<f64>>,
}

/// One colour per peer, in the order of `brokers`.
const COLOURS: [RGBColor; 3] = [
    RGBColor(0x3b, 0x6e, 0xa8),
    RGBColor(0xe0, 0x8a, 0x2c),
    RGBColor(0x5a, 0x9e, 0x5a),
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: compare-plot IN.json OUT.svg (IN.json from benches/compare.sh --json)");
    };
    let text = std::fs::read_to_string(input).with_context(|| format!("reading {input}"))?;
    let cmp: Comparison =
        serde_json::from_str(&text).with_context(|| format!("{input}: not compare.sh's JSON"))?;
    draw(&cmp, Path::new(output))?;
    println!("wrote {output}");
    Ok(())
}

/// The rows that have at least one finite, positive ratio, with their ratios per peer.
fn plotted<'a>(cmp: &'a Comparison, peers: &[&str]) -> Vec<(&'a str, Vec<Option<f64>>)> {
    cmp.rows
        .iter()
        .map(|r| {
            let ratios = peers
                .iter()
                .map(|p| {
                    r.ratios
                        .get(*p)
                        .copied()
                        .flatten()
                        .filter(|v| v.is_finite() && *v > 0.0)
                })
                .collect::<Vec<_>>();
            (r.scenario.as_str(), ratios)
        })
        .filter(|(_, ratios)| ratios.iter().any(Option::is_some))
        .collect()
}

fn draw(cmp: &Comparison, out: &Path) -> anyhow::Result<()> {
    let peers: Vec<&str> = cmp
        .brokers
        .iter()
        .map(String::as_str)
        .filter(|b| *b != "canopy")
        .collect();
    let rows = plotted(cmp, &peers);
    if rows.is_empty() {
        bail!("no row has a ratio: was only Canopy measured?");
    }
    let all = rows.iter().flat_map(|(_, r)| r.iter().flatten().copied());
    let (lo, hi) = all.fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Whole decades around the data, parity always inside.
    let lo = 10f64.powf((lo.log10() - 0.15).floor());
    let hi = 10f64.powf((hi.log10() + 0.15).ceil());

    let n = rows.len();
    let band = 16 * peers.len().max(1) as u32 + 10;
    let height = 150 + band * n as u32;
    let root = SVGBackend::new(out, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(64);
    title.draw(&Text::new(
        "Canopy's advantage over each broker (log scale; right of 1× = Canopy better)",
        (20, 12),
        ("sans-serif", 20).into_font(),
    ))?;
    title.draw(&Text::new(
        format!(
            "{}; medians of {} round(s), {} per throughput run",
            cmp.mode, cmp.rounds, cmp.duration
        ),
        (20, 40),
        ("sans-serif", 13)
            .into_font()
            .color(&RGBColor(0x55, 0x55, 0x55)),
    ))?;

    let mut chart = ChartBuilder::on(&body)
        .margin_right(30)
        .margin_bottom(10)
        .x_label_area_size(40)
        .y_label_area_size(330)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(
            "Canopy's advantage (throughput: Canopy ÷ peer; time, memory, latency: peer ÷ Canopy)",
        )
        .x_label_formatter(&|v| format!("{v}×"))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()?;

    let bar = 1.0 / (peers.len() as f64 + 0.6);
    for (i, (label, ratios)) in rows.iter().enumerate() {
        // Row 0 at the top.
        let top = (n - i) as f64 - 0.3 * bar;
        let (px, py) = chart.backend_coord(&(lo, top - 0.5 * peers.len() as f64 * bar));
        root.draw(&Text::new(
            label.to_string(),
            (px - 10, py),
            TextStyle::from(("sans-serif", 13).into_font())
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))?;
        for (k, ratio) in ratios.iter().enumerate() {
            let Some(r) = *ratio else { continue };
            let colour = COLOURS[k % COLOURS.len()];
            let y0 = top - (k as f64 + 1.0) * bar;
            let y1 = top - k as f64 * bar;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(1.0f64.min(r), y0), (1.0f64.max(r), y1)],
                colour.filled(),
            )))?;
            let (ex, ey) = chart.backend_coord(&(r, (y0 + y1) / 2.0));
            let (dx, hpos) = if r >= 1.0 {
                (4, HPos::Left)
            } else {
                (-4, HPos::Right)
            };
            root.draw(&Text::new(
                format!("{r:.2}×"),
                (ex + dx, ey),
                TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(hpos, VPos::Center)),
            ))?;
        }
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, 0.0), (1.0, n as f64)],
        BLACK.stroke_width(1),
    )))?;
    // The legend, in the title band (inside the plot it would cover bars).
    for (k, p) in peers.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let x = 880;
        let y = 14 + 20 * k as i32;
        root.draw(&Rectangle::new([(x, y), (x + 14, y + 10)], colour.filled()))?;
        root.draw(&Text::new(
            format!("vs {p}"),
            (x + 20, y - 1),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const JSON: &str = r#"{"mode":"pinned","rounds":3,"duration":"5s",
        "brokers":["canopy","mosquitto","rumqttd"],
        "rows":[
          {"scenario":"fanin QoS 0, msgs/s","higher_is_better":true,
           "values":{"canopy":9,"mosquitto":3,"rumqttd":1},"ratios":{"mosquitto":3.0,"rumqttd":9.0}},
          {"scenario":"fanin QoS 0, lost","values":{"canopy":0},"ratios":{}},
          {"scenario":"idle connection, bytes","ratios":{"mosquitto":0.36,"rumqttd":null}}
        ]}"#;

    #[test]
    fn rows_without_a_ratio_are_left_out_and_missing_ratios_stay_empty() {
        let cmp: Comparison = serde_json::from_str(JSON).unwrap();
        let rows = plotted(&cmp, &["mosquitto", "rumqttd"]);
        assert_eq!(
            rows,
            vec![
                ("fanin QoS 0, msgs/s", vec![Some(3.0), Some(9.0)]),
                ("idle connection, bytes", vec![Some(0.36), None]),
            ]
        );
    }

    #[test]
    fn the_svg_names_every_plotted_row_and_ratio() {
        let cmp: Comparison = serde_json::from_str(JSON).unwrap();
        let out = std::env::temp_dir().join(format!("compare-plot-{}.svg", std::process::id()));
        draw(&cmp, &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        for text in [
            "fanin QoS 0, msgs/s",
            "idle connection, bytes",
            "3.00×",
            "9.00×",
            "0.36×",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(!svg.contains("lost"));
    }

    #[test]
    fn only_canopy_measured_is_an_error() {
        let cmp: Comparison = serde_json::from_str(
            r#"{"mode":"m","rounds":1,"brokers":["canopy"],"rows":[{"scenario":"a","ratios":{}}]}"#,
        )
        .unwrap();
        let out = std::env::temp_dir().join("compare-plot-never-written.svg");
        assert!(draw(&cmp, &out).is_err());
    }
}
