//! Charts drawn by the server as SVG, readable without a script: the
//! numbers are also in a table beside each chart. Only geometry is
//! computed here; the templates write the SVG (and escape every label).

/// Width of the SVG coordinate space; the chart scales to its box.
pub const WIDTH: f64 = 600.0;
const LABEL_WIDTH: f64 = 170.0;
const BAR_HEIGHT: f64 = 22.0;
const BAR_GAP: f64 = 8.0;
/// Characters of a label the SVG shows (the table beside has it whole).
const LABEL_CHARS: usize = 22;

pub struct Bar {
    pub label: String,
    /// The label as the SVG shows it (shortened).
    pub short: String,
    pub value: i64,
    pub y: f64,
    pub text_y: f64,
    pub x: f64,
    pub width: f64,
    pub value_x: f64,
    pub share: String,
}

/// Horizontal bars, one per label, longest = largest.
pub struct BarChart {
    pub id: String,
    pub title: String,
    pub bars: Vec<Bar>,
    pub total: i64,
    pub height: f64,
}

impl BarChart {
    pub fn new(id: &str, title: String, rows: &[(String, i64)]) -> BarChart {
        let total: i64 = rows.iter().map(|r| r.1).sum();
        let largest = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
        let room = WIDTH - LABEL_WIDTH - 70.0;
        let bars = rows
            .iter()
            .enumerate()
            .map(|(i, (label, value))| {
                let y = i as f64 * (BAR_HEIGHT + BAR_GAP);
                let width = (*value as f64 / largest * room).max(if *value > 0 { 1.0 } else { 0.0 });
                let short = if label.chars().count() > LABEL_CHARS {
                    format!("{}…", label.chars().take(LABEL_CHARS - 1).collect::<String>())
                } else {
                    label.clone()
                };
                Bar {
                    label: label.clone(),
                    short,
                    value: *value,
                    y,
                    text_y: y + BAR_HEIGHT * 0.7,
                    x: LABEL_WIDTH,
                    width,
                    value_x: LABEL_WIDTH + width + 6.0,
                    share: share(*value, total),
                }
            })
            .collect::<Vec<_>>();
        let height = (bars.len().max(1) as f64) * (BAR_HEIGHT + BAR_GAP);
        BarChart { id: id.to_owned(), title, bars, total, height }
    }
}

/// `value` as a share of `total`, e.g. `12.5 %`.
pub fn share(value: i64, total: i64) -> String {
    if total <= 0 {
        return "0 %".into();
    }
    format!("{:.1} %", value as f64 * 100.0 / total as f64)
}

/// A count over time as one line.
pub struct LineChart {
    /// `x,y x,y …` in the SVG's coordinates.
    pub points: String,
    pub height: f64,
    pub max: i64,
    pub total: i64,
    /// (x, label) of the marks along the time axis.
    pub ticks: Vec<(f64, String)>,
}

impl LineChart {
    /// `values` evenly spaced; a tick every `tick_every` values, labelled
    /// by `label(index)`.
    pub fn new(values: &[i64], tick_every: usize, label: impl Fn(usize) -> String) -> LineChart {
        let height = 160.0;
        let max = values.iter().copied().max().unwrap_or(0);
        let scale = if max > 0 { (height - 10.0) / max as f64 } else { 0.0 };
        let step = if values.len() > 1 { WIDTH / (values.len() - 1) as f64 } else { 0.0 };
        let points = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, height - *v as f64 * scale))
            .collect::<Vec<_>>()
            .join(" ");
        let ticks =
            (0..values.len()).step_by(tick_every.max(1)).map(|i| (i as f64 * step, label(i))).collect();
        LineChart { points, height, max, total: values.iter().sum(), ticks }
    }
}

/// One stage's terminals by where they stand, as one stacked bar.
pub struct StackedBar {
    /// (CSS class, x, width, count, catalogue key).
    pub segments: Vec<(&'static str, f64, f64, u64, &'static str)>,
}

impl StackedBar {
    pub fn new(parts: &[(&'static str, u64, &'static str)]) -> StackedBar {
        let total: u64 = parts.iter().map(|p| p.1).sum();
        let mut x = 0.0;
        let segments = parts
            .iter()
            .filter(|p| p.1 > 0)
            .map(|(class, n, key)| {
                let width = *n as f64 / total.max(1) as f64 * WIDTH;
                let segment = (*class, x, width, *n, *key);
                x += width;
                segment
            })
            .collect();
        StackedBar { segments }
    }
}

/// One stage's terminals by where they stand over time: a band per part,
/// stacked in the order given, as polygons.
pub struct StackedArea {
    /// (CSS class, catalogue key, `x,y x,y …` of the band's outline).
    pub bands: Vec<(&'static str, &'static str, String)>,
    pub height: f64,
    /// (x, label) of the marks along the time axis.
    pub ticks: Vec<(f64, String)>,
}

impl StackedArea {
    /// `times` ascending (unix seconds), `values[i]` the parts at
    /// `times[i]` in the order of `parts` (class, catalogue key); about
    /// `tick_count` marks labelled by `label(time)`.
    pub fn new(
        parts: &[(&'static str, &'static str)],
        times: &[i64],
        values: &[Vec<u64>],
        tick_count: usize,
        label: impl Fn(i64) -> String,
    ) -> StackedArea {
        let height = 80.0;
        // The largest total is the top of the chart.
        let max = values.iter().map(|v| v.iter().sum::<u64>()).max().unwrap_or(0);
        let scale = if max > 0 { height / max as f64 } else { 0.0 };
        let (first, last) = (times.first().copied().unwrap_or(0), times.last().copied().unwrap_or(0));
        let span = (last - first).max(0) as f64;
        // One count only: a flat band across the chart.
        let xs: Vec<f64> = if times.len() == 1 {
            vec![0.0, WIDTH]
        } else {
            times.iter().map(|t| if span > 0.0 { (t - first) as f64 / span * WIDTH } else { 0.0 }).collect()
        };
        let at = |i: usize| if times.len() == 1 { 0 } else { i };
        let mut below = vec![0u64; xs.len()];
        let mut bands = Vec::new();
        for (k, (class, key)) in parts.iter().enumerate() {
            let above: Vec<u64> =
                (0..xs.len()).map(|i| below[i] + values[at(i)].get(k).copied().unwrap_or(0)).collect();
            if above != below {
                let y = |n: u64| height - n as f64 * scale;
                let upper = (0..xs.len()).map(|i| format!("{:.1},{:.1}", xs[i], y(above[i])));
                let lower = (0..xs.len()).rev().map(|i| format!("{:.1},{:.1}", xs[i], y(below[i])));
                bands.push((*class, *key, upper.chain(lower).collect::<Vec<_>>().join(" ")));
            }
            below = above;
        }
        let ticks = if times.len() < 2 || span <= 0.0 {
            times.first().map(|t| vec![(0.0, label(*t))]).unwrap_or_default()
        } else {
            let marks = tick_count.max(2);
            let mut ticks: Vec<(f64, String)> = Vec::new();
            for i in 0..marks {
                let x = WIDTH * i as f64 / (marks - 1) as f64;
                let text = label(first + (span * i as f64 / (marks - 1) as f64) as i64);
                // A short span shows the same minute twice: once is enough,
                // and the end of the axis keeps its mark.
                match ticks.last_mut() {
                    Some((last_x, last)) if *last == text => {
                        if i == marks - 1 {
                            *last_x = x;
                        }
                    }
                    _ => ticks.push((x, text)),
                }
            }
            ticks
        };
        StackedArea { bands, height, ticks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_shorten_long_labels() {
        let chart = BarChart::new(
            "m",
            "Models".into(),
            &[("A35".into(), 300), ("A920PRO-WITH-A-VERY-LONG-NAME".into(), 100), ("X".into(), 0)],
        );
        assert_eq!(chart.total, 400);
        assert!((chart.bars[0].width - (WIDTH - LABEL_WIDTH - 70.0)).abs() < 1e-9);
        assert!((chart.bars[1].width * 3.0 - chart.bars[0].width).abs() < 1e-9);
        assert_eq!(chart.bars[2].width, 0.0);
        assert_eq!(chart.bars[1].short.chars().count(), LABEL_CHARS);
        assert_eq!(chart.bars[1].share, "25.0 %");
    }

    #[test]
    fn a_line_spans_the_width_and_its_peak_reaches_the_top() {
        let chart = LineChart::new(&[0, 5, 10], 1, |i| i.to_string());
        assert_eq!(chart.points, "0.0,160.0 300.0,85.0 600.0,10.0");
        assert_eq!(chart.ticks.len(), 3);
        let flat = LineChart::new(&[0, 0], 1, |i| i.to_string());
        assert_eq!(flat.points, "0.0,160.0 600.0,160.0");
    }

    #[test]
    fn stacked_bands_sit_on_each_other_and_reach_the_top_at_the_largest_total() {
        let parts = [("installed", "k1"), ("failed", "k2"), ("pending", "k3")];
        let area = StackedArea::new(
            &parts,
            &[0, 60, 120],
            &[vec![0, 0, 10], vec![5, 0, 5], vec![10, 0, 0]],
            3,
            |t| t.to_string(),
        );
        // No failure at any time: no band for it.
        assert_eq!(area.bands.iter().map(|b| b.0).collect::<Vec<_>>(), ["installed", "pending"]);
        assert_eq!(area.bands[0].2, "0.0,80.0 300.0,40.0 600.0,0.0 600.0,80.0 300.0,80.0 0.0,80.0");
        assert_eq!(area.bands[1].2, "0.0,0.0 300.0,0.0 600.0,0.0 600.0,0.0 300.0,40.0 0.0,80.0");
        assert_eq!(area.ticks, [(0.0, "0".into()), (300.0, "60".into()), (600.0, "120".into())]);
        let one = StackedArea::new(&parts, &[60], &[vec![1, 1, 0]], 3, |t| t.to_string());
        assert_eq!(one.bands[0].2, "0.0,40.0 600.0,40.0 600.0,80.0 0.0,80.0");
        assert_eq!(one.ticks.len(), 1);
        let minutes =
            StackedArea::new(&parts, &[0, 120], &[vec![1, 0, 0], vec![1, 0, 0]], 5, |t| (t / 60).to_string());
        assert_eq!(minutes.ticks, [(0.0, "0".into()), (300.0, "1".into()), (600.0, "2".into())]);
        // The last minute repeated: its mark stays at the end of the axis.
        let late =
            StackedArea::new(&parts, &[0, 100], &[vec![1, 0, 0], vec![1, 0, 0]], 5, |t| (t / 60).to_string());
        assert_eq!(late.ticks, [(0.0, "0".into()), (600.0, "1".into())]);
    }

    #[test]
    fn stacked_segments_fill_the_width_in_order() {
        let bar = StackedBar::new(&[("a", 1, "k"), ("b", 0, "k"), ("c", 3, "k")]);
        assert_eq!(bar.segments.len(), 2);
        assert_eq!(bar.segments[1].1, WIDTH / 4.0);
        assert!((bar.segments[1].1 + bar.segments[1].2 - WIDTH).abs() < 1e-9);
    }
}
