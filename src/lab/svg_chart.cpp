#include "lab/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace blocklab::lab {

namespace {

// Colour-blind-safe palette (Okabe-Ito).
const char* const kColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string tick_label(double v, bool log) {
  char buf[32];
  if (log) {
    const int e = int(std::lround(std::log10(v)));
    if (e >= -2 && e <= 3) std::snprintf(buf, sizeof buf, "%g", std::pow(10.0, e));
    else std::snprintf(buf, sizeof buf, "1e%d", e);
  } else if (v != 0 && (std::abs(v) >= 1e5 || std::abs(v) < 1e-3)) {
    std::snprintf(buf, sizeof buf, "%.0e", v);
  } else {
    std::snprintf(buf, sizeof buf, "%g", v);
  }
  return buf;
}

// About `n` round tick values covering [lo, hi].
std::vector<double> linear_ticks(double lo, double hi, int n) {
  const double span = hi - lo;
  const double raw = span / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) t.push_back(std::abs(v) < 1e-12 * span ? 0 : v);
  return t;
}

}  // namespace

std::string render_svg(const LineChart& c) {
  const double left = 78, right = 190, top = 40, bottom = 58;
  const double pw = c.width - left - right, ph = c.height - top - bottom;
  auto usable = [&](double y) { return std::isfinite(y) && (!c.log_y || y > 0); };
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const Series& s : c.series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !usable(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      const double y = c.log_y ? std::log10(s.y[i]) : s.y[i];
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (c.log_y) {
    y0 = std::floor(y0);
    y1 = std::ceil(y1);
    if (y1 == y0) y1 = y0 + 1;
  } else {
    if (y1 == y0) y1 = y0 + 1;
    const double pad = 0.05 * (y1 - y0);
    y0 -= pad;
    y1 += pad;
  }
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return top + ph - ((c.log_y ? std::log10(y) : y) - y0) / (y1 - y0) * ph; };

  std::string svg;
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(c.width) + "\" height=\"" +
         std::to_string(c.height) + "\" viewBox=\"0 0 " + std::to_string(c.width) + " " + std::to_string(c.height) +
         "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += "<text x=\"" + num(left) + "\" y=\"22\" font-size=\"15\" font-weight=\"bold\">" + escape(c.title) + "</text>\n";
  // Grid and ticks.
  std::vector<double> yt;
  if (c.log_y) {
    const int step = std::max(1, int((y1 - y0) / 8));
    for (double e = y0; e <= y1 + 1e-9; e += step) yt.push_back(std::pow(10.0, e));
  } else {
    yt = linear_ticks(y0, y1, 6);
  }
  for (double v : yt) {
    const double y = py(v);
    svg += "<line x1=\"" + num(left) + "\" x2=\"" + num(left + pw) + "\" y1=\"" + num(y) + "\" y2=\"" + num(y) +
           "\" stroke=\"#ddd\"/>\n";
    svg += "<text x=\"" + num(left - 6) + "\" y=\"" + num(y + 4) + "\" text-anchor=\"end\">" + tick_label(v, c.log_y) +
           "</text>\n";
  }
  for (double v : linear_ticks(x0, x1, 8)) {
    const double x = px(v);
    svg += "<line x1=\"" + num(x) + "\" x2=\"" + num(x) + "\" y1=\"" + num(top) + "\" y2=\"" + num(top + ph) +
           "\" stroke=\"#eee\"/>\n";
    svg += "<text x=\"" + num(x) + "\" y=\"" + num(top + ph + 16) + "\" text-anchor=\"middle\">" + tick_label(v, false) +
           "</text>\n";
  }
  svg += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(pw) + "\" height=\"" + num(ph) +
         "\" fill=\"none\" stroke=\"#333\"/>\n";
  svg += "<text x=\"" + num(left + pw / 2) + "\" y=\"" + num(c.height - 14) + "\" text-anchor=\"middle\">" +
         escape(c.x_label) + "</text>\n";
  svg += "<text transform=\"translate(18," + num(top + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
         escape(c.y_label + (c.log_y ? " (log scale)" : "")) + "</text>\n";
  // Series and legend.
  for (size_t k = 0; k < c.series.size(); ++k) {
    const Series& s = c.series[k];
    const std::string color = kColors[k % (sizeof kColors / sizeof kColors[0])];
    std::string d;
    bool pen_down = false;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !usable(s.y[i])) {
        pen_down = false;
        continue;
      }
      d += (pen_down ? " L" : " M") + num(px(s.x[i])) + " " + num(py(s.y[i]));
      pen_down = true;
      if (s.markers)
        svg += "<circle cx=\"" + num(px(s.x[i])) + "\" cy=\"" + num(py(s.y[i])) + "\" r=\"2.5\" fill=\"" + color + "\"/>\n";
    }
    if (!d.empty()) svg += "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"1.6\"/>\n";
    const double ly = top + 8 + 18 * double(k);
    svg += "<line x1=\"" + num(left + pw + 12) + "\" x2=\"" + num(left + pw + 32) + "\" y1=\"" + num(ly) + "\" y2=\"" +
           num(ly) + "\" stroke=\"" + color + "\" stroke-width=\"2\"/>\n";
    svg += "<text x=\"" + num(left + pw + 38) + "\" y=\"" + num(ly + 4) + "\">" + escape(s.name) + "</text>\n";
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace blocklab::lab

namespace blocklab::lab {

namespace {

// viridis at five stops, interpolated in RGB: dark (low) to yellow (high), readable in grey too.
std::string viridis(double t) {
  static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, int(t));
  const double f = t - i;
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", int(stops[i][0] + f * (stops[i + 1][0] - stops[i][0])),
                int(stops[i][1] + f * (stops[i + 1][1] - stops[i][1])), int(stops[i][2] + f * (stops[i + 1][2] - stops[i][2])));
  return buf;
}

}  // namespace

std::string render_svg(const Heatmap& h) {
  const double left = 110, top = 46, legend = 150, bottom = 56;
  const size_t R = h.rows.size(), C = h.columns.size();
  const double pw = double(C) * h.cell_width, ph = double(R) * h.cell_height;
  const double width = left + pw + legend, height = top + ph + bottom;
  auto key = [&](double v) { return h.log_scale ? std::log10(v) : v; };
  auto usable = [&](double v) { return std::isfinite(v) && (!h.log_scale || v > 0); };
  double lo = std::isfinite(h.lo) ? key(h.lo) : INFINITY, hi = std::isfinite(h.hi) ? key(h.hi) : -INFINITY;
  for (const auto& row : h.values)
    for (double v : row)
      if (usable(v)) {
        if (!std::isfinite(h.lo)) lo = std::min(lo, key(v));
        if (!std::isfinite(h.hi)) hi = std::max(hi, key(v));
      }
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) hi = lo + 1;
  auto tone = [&](double v) { return (key(v) - lo) / (hi - lo); };
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" + num(height) +
                    "\" viewBox=\"0 0 " + num(width) + " " + num(height) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<defs><pattern id=\"diverged\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
         "<rect width=\"8\" height=\"8\" fill=\"#f2f2f2\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#c00\" stroke-width=\"3\"/></pattern></defs>\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += "<text x=\"" + num(left) + "\" y=\"22\" font-size=\"15\" font-weight=\"bold\">" + escape(h.title) + "</text>\n";
  for (size_t r = 0; r < R; ++r) {
    const double y = top + double(r) * h.cell_height;
    svg += "<text x=\"" + num(left - 8) + "\" y=\"" + num(y + h.cell_height / 2.0 + 4) + "\" text-anchor=\"end\">" + escape(h.rows[r]) + "</text>\n";
    for (size_t c = 0; c < C; ++c) {
      const double x = left + double(c) * h.cell_width;
      const double v = r < h.values.size() && c < h.values[r].size() ? h.values[r][c] : NAN;
      const bool ok = usable(v);
      const double t = ok ? tone(v) : 0;
      svg += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + std::to_string(h.cell_width) + "\" height=\"" +
             std::to_string(h.cell_height) + "\" fill=\"" + (ok ? viridis(t) : std::string("url(#diverged)")) + "\" stroke=\"white\"/>\n";
      const std::string label = r < h.labels.size() && c < h.labels[r].size() ? h.labels[r][c] : "";
      if (!label.empty() || !ok)
        svg += "<text x=\"" + num(x + h.cell_width / 2.0) + "\" y=\"" + num(y + h.cell_height / 2.0 + 4) + "\" text-anchor=\"middle\" fill=\"" +
               (ok && t < 0.6 ? "white" : "black") + "\">" + escape(label.empty() ? "diverged" : label) + "</text>\n";
    }
  }
  for (size_t c = 0; c < C; ++c)
    svg += "<text x=\"" + num(left + (double(c) + 0.5) * h.cell_width) + "\" y=\"" + num(top + ph + 18) + "\" text-anchor=\"middle\">" +
           escape(h.columns[c]) + "</text>\n";
  svg += "<text x=\"" + num(left + pw / 2) + "\" y=\"" + num(top + ph + 42) + "\" text-anchor=\"middle\">" + escape(h.x_label) + "</text>\n";
  svg += "<text transform=\"translate(18," + num(top + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" + escape(h.y_label) + "</text>\n";
  // The legend: the scale from lo (bottom) to hi (top), and the diverged swatch.
  const double lx = left + pw + 30, lh = std::max(ph - 30, 60.0);
  for (int i = 0; i < 20; ++i)
    svg += "<rect x=\"" + num(lx) + "\" y=\"" + num(top + lh * (1 - (i + 1) / 20.0)) + "\" width=\"16\" height=\"" + num(lh / 20 + 0.5) +
           "\" fill=\"" + viridis((i + 0.5) / 20) + "\"/>\n";
  auto shown = [&](double k) { return tick_label(h.log_scale ? std::pow(10.0, k) : k, false); };
  svg += "<text x=\"" + num(lx + 22) + "\" y=\"" + num(top + 8) + "\">" + escape(shown(hi)) + "</text>\n";
  svg += "<text x=\"" + num(lx + 22) + "\" y=\"" + num(top + lh) + "\">" + escape(shown(lo)) + "</text>\n";
  svg += "<text transform=\"translate(" + num(lx - 6) + "," + num(top + lh / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
         escape(h.value_label + (h.log_scale ? " (log)" : "")) + "</text>\n";
  svg += "<rect x=\"" + num(lx) + "\" y=\"" + num(top + lh + 10) + "\" width=\"16\" height=\"16\" fill=\"url(#diverged)\"/>\n";
  svg += "<text x=\"" + num(lx + 22) + "\" y=\"" + num(top + lh + 23) + "\">diverged</text>\n";
  return svg + "</svg>\n";
}

}  // namespace blocklab::lab
