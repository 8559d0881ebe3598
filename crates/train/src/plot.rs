//! PNG line charts of loss terms and evaluation metrics over epochs.
//!
//! Drawn with `plotters` into an RGB buffer and encoded with `png`. The label font (an ASCII
//! subset of DejaVu Sans, 10 KB, licence in `assets/FONT-LICENSE`) is compiled in, so plots look
//! the same on a headless CI box without fontconfig as on a workstation.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::checkpoint::write_atomic;
use crate::error::TrainError;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
const FONT_NAME: &str = "relata-sans";
const WIDTH: u32 = 720;
const HEIGHT: u32 = 420;

fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT)
                .map_err(|_| "the bundled font failed to load".to_string())
        })
        .clone()
}

/// One named line: `(x, y)` points (non-finite `y` values are skipped).
pub struct Series<'a> {
    /// Legend label.
    pub name: &'a str,
    /// Points.
    pub points: &'a [(f64, f64)],
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn draw(
    buffer: &mut [u8],
    title: &str,
    x_label: &str,
    series: &[Series<'_>],
) -> Result<(), Box<dyn std::error::Error>> {
    register_font()?;
    let root = BitMapBackend::with_buffer(buffer, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in finite() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9 + y1.abs() * 1e-3);
    let font = |size: u32| (FONT_NAME, size).into_font();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, font(20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .label_style(font(13))
        .axis_desc_style(font(14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        if pts.len() <= 60 {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    if series.len() > 1 || !series.is_empty() && !series[0].name.is_empty() {
        chart
            .configure_series_labels()
            .label_font(font(13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Writes a line chart of `series` to `path` (PNG, 720×420).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[Series<'_>],
) -> Result<(), TrainError> {
    let err = |reason: String| TrainError::Plot {
        path: path.to_path_buf(),
        reason,
    };
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(&mut buffer, title, x_label, series).map_err(|e| err(e.to_string()))?;
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
        writer
            .write_image_data(&buffer)
            .map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, &png_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_decodable_png_with_ink() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("loss.png");
        let a: Vec<(f64, f64)> = (1..=10).map(|e| (e as f64, 1.0 / e as f64)).collect();
        let b: Vec<(f64, f64)> = (1..=10).map(|e| (e as f64, 0.5 / e as f64)).collect();
        line_chart(
            &path,
            "loss",
            "epoch",
            &[
                Series {
                    name: "train",
                    points: &a,
                },
                Series {
                    name: "val",
                    points: &b,
                },
            ],
        )
        .unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        let non_white = buf.chunks(3).filter(|p| p != &[255, 255, 255]).count();
        assert!(
            non_white > 2000,
            "the chart is blank ({non_white} inked pixels)"
        );
        // Single-point and empty series do not fail.
        line_chart(
            &path,
            "one",
            "epoch",
            &[Series {
                name: "x",
                points: &[(1.0, 2.0)],
            }],
        )
        .unwrap();
        line_chart(&path, "none", "epoch", &[]).unwrap();
    }
}
