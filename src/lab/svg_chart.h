// Line charts as standalone SVG, for the experiments' reports: no plotting program needed, and the
// same file renders in a browser, on GitHub and in the docs.
#pragma once

#include <cmath>
#include <string>
#include <vector>

namespace blocklab::lab {

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite points (and <= 0 on a log axis) break the line
  bool markers = false;
};

struct LineChart {
  std::string title, x_label, y_label;
  bool log_y = false;
  std::vector<Series> series;
  int width = 760, height = 420;
};

std::string render_svg(const LineChart& chart);

// A grid of values (a sweep: rows × columns), each cell coloured on one shared scale with a legend;
// a non-finite value is a cell marked "diverged" (hatched). Each cell may carry a short label.
struct Heatmap {
  std::string title, x_label, y_label, value_label;
  std::vector<std::string> columns, rows;        // tick labels
  std::vector<std::vector<double>> values;       // [row][column]
  std::vector<std::vector<std::string>> labels;  // [row][column], or empty
  bool log_scale = false;                        // colour by log10(value) (values > 0)
  double lo = NAN, hi = NAN;                     // the scale's ends; NaN: the values' own range
  int cell_width = 96, cell_height = 44;
};

std::string render_svg(const Heatmap& map);

}  // namespace blocklab::lab
