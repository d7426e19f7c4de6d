//! Small DOM builders. Every string goes in as text (`textContent`) or as an attribute value,
//! never as markup, so nothing from a link or a file can become an element or a script.

use web_sys::{Document, Element};

use crate::ui::chart::{self, Frame, Range};

const SVG: &str = "http://www.w3.org/2000/svg";

/// An HTML element with a class and text (either may be empty).
pub fn el(document: &Document, tag: &str, class: &str, text: &str) -> Element {
    let element = document
        .create_element(tag)
        .expect("creating an element with a fixed tag name succeeds");
    if !class.is_empty() {
        element.set_class_name(class);
    }
    if !text.is_empty() {
        element.set_text_content(Some(text));
    }
    element
}

pub fn svg_el(document: &Document, tag: &str, attributes: &[(&str, String)]) -> Element {
    let element = document
        .create_element_ns(Some(SVG), tag)
        .expect("creating an SVG element with a fixed tag name succeeds");
    for (name, value) in attributes {
        element.set_attribute(name, value).ok();
    }
    element
}

/// An SVG text at `(x, y)` with a class.
pub fn svg_text(
    document: &Document,
    x: f64,
    y: f64,
    anchor: &str,
    class: &str,
    text: &str,
) -> Element {
    let label = svg_el(
        document,
        "text",
        &[
            ("x", format!("{x:.1}")),
            ("y", format!("{y:.1}")),
            ("text-anchor", anchor.into()),
            ("class", class.into()),
        ],
    );
    label.set_text_content(Some(text));
    label
}

pub fn clear(element: &Element) {
    element.set_text_content(None);
}

pub fn append(parent: &Element, child: &Element) {
    parent.append_child(child).ok();
}

/// Call `handler` on `event` at `element` for as long as the page lives.
pub fn listen(element: &Element, event: &str, handler: impl Fn(&web_sys::Event) + 'static) {
    gloo_events::EventListener::new(element, event.to_string(), handler).forget();
}

fn svg_root(document: &Document, frame: Frame, label: &str) -> Element {
    let svg = svg_el(
        document,
        "svg",
        &[
            ("viewBox", format!("0 0 {} {}", frame.width, frame.height)),
            ("class", "chart".into()),
            ("role", "img".into()),
            ("aria-label", label.into()),
        ],
    );
    let title = svg_el(document, "title", &[]);
    title.set_text_content(Some(label));
    append(&svg, &title);
    svg
}

fn axis_labels(document: &Document, svg: &Element, frame: Frame, xs: Range, ys: Range) {
    let text = |x: f64, y: f64, anchor: &str, value: String| {
        let t = svg_el(
            document,
            "text",
            &[
                ("x", format!("{x:.1}")),
                ("y", format!("{y:.1}")),
                ("text-anchor", anchor.into()),
                ("class", "tick".into()),
            ],
        );
        t.set_text_content(Some(&value));
        append(svg, &t);
    };
    let (left, right) = (frame.x(0.0), frame.x(1.0));
    let (bottom, top) = (frame.y(0.0), frame.y(1.0));
    let axis = svg_el(
        document,
        "polyline",
        &[
            (
                "points",
                format!("{left:.1},{top:.1} {left:.1},{bottom:.1} {right:.1},{bottom:.1}"),
            ),
            ("class", "axis".into()),
        ],
    );
    append(svg, &axis);
    text(left - 3.0, top + 4.0, "end", chart::tick(ys.max));
    text(left - 3.0, bottom, "end", chart::tick(ys.min));
    text(left, bottom + 12.0, "start", chart::tick(xs.min));
    text(right, bottom + 12.0, "end", chart::tick(xs.max));
}

/// A line chart of `(x, y)` points, with its title as a caption.
pub fn line_chart(
    document: &Document,
    title: &str,
    points: &[(f64, f64)],
    frame: Frame,
) -> Element {
    let figure = el(document, "figure", "chart-figure", "");
    append(&figure, &el(document, "figcaption", "", title));
    let svg = svg_root(document, frame, title);
    if let Some((line, xs, ys)) = chart::polyline(points, frame) {
        axis_labels(document, &svg, frame, xs, ys);
        let path = svg_el(
            document,
            "polyline",
            &[("points", line), ("class", "line".into())],
        );
        path.set_attribute("data-points", &points.len().to_string())
            .ok();
        append(&svg, &path);
    }
    append(&figure, &svg);
    figure
}

/// A histogram: bars over `edges` (one more edge than counts).
pub fn histogram(
    document: &Document,
    title: &str,
    edges: &[f64],
    counts: &[f64],
    frame: Frame,
) -> Element {
    let figure = el(document, "figure", "chart-figure", "");
    append(&figure, &el(document, "figcaption", "", title));
    let svg = svg_root(document, frame, title);
    svg.set_attribute("data-kind", "histogram").ok();
    let bars = chart::bars(counts, frame);
    if let (Some(xs), Some(ys)) = (
        Range::of(edges.iter().copied()),
        Range::of(counts.iter().copied().chain([0.0])),
    ) {
        axis_labels(document, &svg, frame, xs, ys);
    }
    for (bar, count) in bars.iter().zip(counts) {
        let rect = svg_el(
            document,
            "rect",
            &[
                ("x", format!("{:.1}", bar.x)),
                ("y", format!("{:.1}", bar.y)),
                ("width", format!("{:.1}", bar.width)),
                ("height", format!("{:.1}", bar.height)),
                ("class", "bar".into()),
            ],
        );
        let tip = svg_el(document, "title", &[]);
        tip.set_text_content(Some(&format!("{count}")));
        append(&rect, &tip);
        append(&svg, &rect);
    }
    append(&figure, &svg);
    figure
}

/// Labelled horizontal bars (values 0..=1 unless `max` says otherwise), as HTML.
pub fn bar_list(document: &Document, rows: &[(String, f64, String)], max: f64) -> Element {
    let list = el(document, "ul", "bar-list", "");
    for (label, value, shown) in rows {
        let item = el(document, "li", "", "");
        let bar = el(document, "span", "fill", "");
        let width = if max > 0.0 {
            (value.abs() / max * 100.0).clamp(0.0, 100.0)
        } else {
            0.0
        };
        bar.set_attribute("style", &format!("width:{width:.1}%"))
            .ok();
        if *value < 0.0 {
            bar.set_class_name("fill negative");
        }
        append(&item, &bar);
        append(&item, &el(document, "span", "label", label));
        append(&item, &el(document, "span", "value", shown));
        append(&list, &item);
    }
    list
}

/// Tokens shaded by activation; the focused one outlined.
pub fn shaded_tokens(
    document: &Document,
    tokens: &[String],
    activations: &[f32],
    max: f32,
    focus: Option<usize>,
) -> Element {
    let line = el(document, "div", "example", "");
    for (i, (token, &a)) in tokens.iter().zip(activations).enumerate() {
        // Newlines would break the line: shown as a visible mark instead.
        let span = el(document, "span", "tok", &token.replace('\n', "↵"));
        let alpha = chart::shade(a, max);
        span.set_attribute(
            "style",
            &format!("background: rgba(230, 120, 20, {alpha:.3})"),
        )
        .ok();
        span.set_attribute("title", &format!("{a:.3}")).ok();
        if Some(i) == focus {
            span.set_class_name("tok focus");
        }
        append(&line, &span);
    }
    line
}
