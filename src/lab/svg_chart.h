// Line charts as standalone SVG, for the experiments' reports: no plotting program needed, and the
// same file renders in a browser, on GitHub and in the docs.
#pragma once

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

}  // namespace blocklab::lab
