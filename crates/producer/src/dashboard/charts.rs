//! Charts as inline SVG: drawn on the server, no script and no external asset. Each chart
//! carries its numbers as text too (a title per bar, a caption), for screen readers and
//! for anyone who would rather read.

use maud::{Markup, html};

/// Bars of sends per hour (oldest first), one bar an hour; `caption` says what it shows.
pub fn hourly(counts: &[u64], caption: &str, width: u32, height: u32) -> Markup {
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let n = counts.len().max(1) as f64;
    let bar = f64::from(width) / n;
    let total: u64 = counts.iter().sum();
    html! {
        figure.chart {
            svg width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } role="img"
                aria-label={ (caption) ": " (total) " in all, at most " (max) " in an hour" } {
                // Day boundaries every 24 bars.
                @for d in (24..counts.len()).step_by(24) {
                    line.day x1=(fmt(d as f64 * bar)) x2=(fmt(d as f64 * bar)) y1="0" y2=(height) {}
                }
                @for (i, c) in counts.iter().enumerate() {
                    @if *c > 0 {
                        @let h = bar_height(*c, max, height);
                        rect.bar x=(fmt(i as f64 * bar)) y=(fmt(f64::from(height) - h)) width=(fmt((bar - 0.5).max(0.5)))
                            height=(fmt(h)) { title { (c) " sent, hour " (i % 24) ":00 UTC" } }
                    }
                }
            }
            figcaption { (caption) ": " (total) " sent, peak " (max_label(counts)) " per hour" }
        }
    }
}

/// Paired horizontal bars per campaign: reply rate and bounce rate (percent of sent).
pub fn rates(rows: &[(String, f64, f64)]) -> Markup {
    let row_h = 34;
    let width = 420.0;
    let label_w = 150.0;
    let scale = rows.iter().flat_map(|(_, r, b)| [*r, *b]).fold(10.0_f64, f64::max);
    let height = (rows.len() as u32 * row_h).max(row_h);
    html! {
        figure.chart {
            svg width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } role="img"
                aria-label="Reply and bounce rate per campaign" {
                @for (i, (name, reply, bounce)) in rows.iter().enumerate() {
                    @let y = i as f64 * f64::from(row_h);
                    text x="0" y=(fmt(y + 18.0)) { (truncate(name, 20)) }
                    rect.reply x=(label_w) y=(fmt(y + 4.0)) width=(fmt(bar_len(*reply, scale, width - label_w - 60.0))) height="11" {
                        title { (name) ": replies " (pct(*reply)) }
                    }
                    text.small x=(fmt(label_w + bar_len(*reply, scale, width - label_w - 60.0) + 4.0)) y=(fmt(y + 14.0)) { (pct(*reply)) }
                    rect.bounce x=(label_w) y=(fmt(y + 17.0)) width=(fmt(bar_len(*bounce, scale, width - label_w - 60.0))) height="11" {
                        title { (name) ": bounces " (pct(*bounce)) }
                    }
                    text.small x=(fmt(label_w + bar_len(*bounce, scale, width - label_w - 60.0) + 4.0)) y=(fmt(y + 27.0)) { (pct(*bounce)) }
                }
            }
            figcaption { span.key.reply {} " reply rate " span.key.bounce {} " bounce rate (of emails sent)" }
        }
    }
}

fn bar_height(count: u64, max: u64, height: u32) -> f64 {
    (count as f64 / max as f64 * f64::from(height)).max(1.0)
}

fn bar_len(value: f64, scale: f64, full: f64) -> f64 {
    if value <= 0.0 { 0.0 } else { (value / scale * full).max(1.0) }
}

fn max_label(counts: &[u64]) -> u64 {
    counts.iter().copied().max().unwrap_or(0)
}

fn pct(v: f64) -> String {
    format!("{v:.1} %")
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

/// A rate in percent, 0 when nothing was sent.
pub fn rate(part: u64, sent: u64) -> f64 {
    if sent == 0 { 0.0 } else { part as f64 * 100.0 / sent as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_hour_and_empty_hours_draw_nothing() {
        let svg = hourly(&[0, 5, 10, 0], "test", 40, 20).into_string();
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        // The busiest hour fills the height, half of it half.
        assert!(svg.contains(r#"y="0.0" width="9.5" height="20.0""#), "{svg}");
        assert!(svg.contains(r#"y="10.0" width="9.5" height="10.0""#), "{svg}");
        assert!(svg.contains("15 sent, peak 10 per hour"), "{svg}");
        let empty = hourly(&[0; 48], "none", 96, 20).into_string();
        assert_eq!(empty.matches("<rect").count(), 0);
        assert!(empty.contains("0 sent, peak 0"), "{empty}");
        assert_eq!(empty.matches("<line").count(), 1, "one day boundary in two days");
    }

    #[test]
    fn rates_are_percent_of_sent_and_names_are_escaped() {
        assert_eq!(rate(1, 4), 25.0);
        assert_eq!(rate(3, 0), 0.0);
        let svg = rates(&[("<b>x</b>".into(), 25.0, 0.0)]).into_string();
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;"), "{svg}");
        assert!(svg.contains("25.0 %"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
    }
}
