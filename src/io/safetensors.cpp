#include "io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json_limits.h"

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace blocklab::io {

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // as the reference implementation
constexpr uint64_t kMaxElements = uint64_t(1) << 40;  // per tensor (and per dimension)

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2}, {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},   {DType::BOOL, "BOOL", 1},
};

bool parse_dtype(const std::string& s, DType* out) {
  for (const DTypeInfo& d : kDTypes)
    if (s == d.name) {
      *out = d.dtype;
      return true;
    }
  return false;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24
    const float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  uint32_t bits;
  if (exp == 31)
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  else
    bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  return std::bit_cast<float>(bits);
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

template <typename V>
V load(const uint8_t* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

const char* dtype_name(DType dtype) {
  for (const DTypeInfo& d : kDTypes)
    if (d.dtype == dtype) return d.name;
  return "?";
}

size_t dtype_size(DType dtype) {
  for (const DTypeInfo& d : kDTypes)
    if (d.dtype == dtype) return d.size;
  return 0;
}

namespace {
Result<SafetensorsIndex> index_safetensors_checked(std::span<const uint8_t> file, const std::string& where);
}  // namespace

const StoredTensor* SafetensorsFile::find(const std::string& name) const {
  for (const StoredTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

namespace {

constexpr const char* kConvertHint =
    "convert it in Python: from safetensors.torch import save_file; "
    "save_file(model.state_dict(), \"m.safetensors\") (tensor names as docs/model-format.md)";

// What a file that is not safetensors looks like, from its first bytes; empty when it does not look like
// anything known.
std::string not_safetensors(std::span<const uint8_t> file) {
  if (file.size() >= 4 && file[0] == 'P' && file[1] == 'K' && file[2] == 3 && file[3] == 4)
    return std::string("not a safetensors file: it is a zip archive, as torch.save writes (a PyTorch pickle/zip); ") +
           kConvertHint;
  if (file.size() >= 2 && file[0] == 0x80 && file[1] >= 2 && file[1] <= 5)
    return std::string("not a safetensors file: it is a Python pickle (protocol ") + std::to_string(file[1]) +
           "), as an old torch.save writes; " + kConvertHint;
  const size_t n = std::min<size_t>(file.size(), 8);
  bool text = n > 0;
  for (size_t i = 0; i < n; ++i) text = text && ((file[i] >= 0x20 && file[i] < 0x7f) || file[i] == '\n' || file[i] == '\r' || file[i] == '\t');
  if (text) {
    std::string start(reinterpret_cast<const char*>(file.data()), n);
    for (char& c : start)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    return "not a safetensors file: it starts with text (\"" + start +
           "...\"): expected an 8-byte little-endian header length, then the JSON header";
  }
  return "";
}

}  // namespace

Result<SafetensorsIndex> index_safetensors(std::span<const uint8_t> file, const std::string& where) {
  try {
    return index_safetensors_checked(file, where);
  } catch (const json::exception& e) {  // a value read without its type checked: a bug here, not a crash
    return Status::error(where + ": header: " + json_error_text(e));
  } catch (const std::exception& e) {
    return Status::error(where + ": cannot read: " + e.what());
  }
}

Result<SafetensorsFile> parse_safetensors(std::span<const uint8_t> file, const std::string& where) {
  Result<SafetensorsIndex> index = index_safetensors(file, where);
  if (!index) return index.status();
  try {
    SafetensorsFile out;
    out.metadata = std::move(index->metadata);
    out.tensors.reserve(index->tensors.size());
    for (TensorView& v : index->tensors)
      out.tensors.push_back({std::move(v.name), v.dtype, std::move(v.shape), std::vector<uint8_t>(v.bytes.begin(), v.bytes.end())});
    return out;
  } catch (const std::exception& e) {  // bad_alloc
    return Status::error(where + ": cannot read: " + e.what());
  }
}

const TensorView* SafetensorsIndex::find(const std::string& name) const {
  for (const TensorView& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

namespace {

Result<SafetensorsIndex> index_safetensors_checked(std::span<const uint8_t> file, const std::string& where) {
  auto fail = [&](const std::string& msg) { return Status::error(where + ": " + msg); };
  // A file that is not safetensors at all (a torch.save pickle, a JSON file) is told apart by its first
  // bytes, but only once they fail as a header length: a real header length may start with the same bytes.
  const uint64_t header_len = file.size() >= 8 ? load<uint64_t>(file.data()) : 0;
  const uint64_t available = file.size() >= 8 ? file.size() - 8 : 0;
  if (file.size() < 8 || header_len > available || header_len > kMaxHeaderBytes || header_len == 0 || file[8] != '{')
    if (std::string what = not_safetensors(file); !what.empty()) return fail(what);
  if (file.size() < 8)
    return fail("truncated: expected at least 8 bytes (the header length), got " + std::to_string(file.size()));
  if (header_len > available)
    return fail("header length " + std::to_string(header_len) + " runs past the end of the file: expected <= " +
                std::to_string(available) + " bytes");
  if (header_len > kMaxHeaderBytes)
    return fail("header length " + std::to_string(header_len) + ": expected <= " + std::to_string(kMaxHeaderBytes));
  Result<json> parsed = parse_json_limited(
      std::string_view(reinterpret_cast<const char*>(file.data()) + 8, size_t(header_len)), kMaxJsonDepth);
  if (!parsed) return fail("header is not valid JSON: " + parsed.status().message());
  const json& header = parsed.value();
  if (!header.is_object()) return fail("header: expected a JSON object, got " + std::string(header.type_name()));

  const uint64_t data_len = available - header_len;
  const uint8_t* data = file.data() + 8 + header_len;
  SafetensorsIndex out;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) return fail("__metadata__: expected an object of strings, got " + std::string(entry.type_name()));
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string())
          return fail("__metadata__." + m.key() + ": expected a string, got " + std::string(m.value().type_name()));
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    if (!entry.is_object()) return fail(what + ": expected an object, got " + std::string(entry.type_name()));
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!entry.contains(key)) return fail(what + ": missing \"" + key + "\"");
    TensorView t;
    t.name = name;
    if (!entry["dtype"].is_string() || !parse_dtype(entry["dtype"].get<std::string>(), &t.dtype))
      return fail(what + ": dtype: expected one of F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL, got " +
                  entry["dtype"].dump());
    const json& shape = entry["shape"];
    if (!shape.is_array()) return fail(what + ": shape: expected an array, got " + shape.dump());
    uint64_t numel = 1;
    for (const json& dim : shape) {
      if (!dim.is_number_unsigned()) return fail(what + ": shape: expected non-negative integers, got " + shape.dump());
      const uint64_t v = dim.get<uint64_t>();
      if (v > kMaxElements || (v != 0 && numel > kMaxElements / v))
        return fail(what + ": shape " + shape.dump() + " is too large: expected at most 2^40 elements");
      numel *= v;
      t.shape.push_back(int64_t(v));
    }
    const json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      return fail(what + ": data_offsets: expected [begin, end] with integers, got " + offsets.dump());
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_len)
      return fail(what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] outside the data section of " + std::to_string(data_len) + " bytes (truncated file?)");
    const uint64_t expected_bytes = numel * dtype_size(t.dtype);
    if (end - begin != expected_bytes)
      return fail(what + ": data_offsets span " + std::to_string(end - begin) + " bytes: expected " +
                  std::to_string(expected_bytes) + " for " + dtype_name(t.dtype) + " " + shape_str(t.shape));
    t.bytes = std::span<const uint8_t>(data + begin, size_t(end - begin));
    spans.push_back({begin, end, name});
    out.tensors.push_back(std::move(t));
  }
  // The data section is the tensors, back to back, with no overlap and nothing else.
  std::vector<size_t> order(spans.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return spans[a].begin < spans[b].begin; });
  uint64_t pos = 0;
  for (size_t i : order) {
    if (spans[i].begin != pos)
      return fail("tensor '" + spans[i].name + "': data_offsets begin at " + std::to_string(spans[i].begin) +
                  ": expected " + std::to_string(pos) + " (tensors must tile the data section without gaps or overlap)");
    pos = spans[i].end;
  }
  if (pos != data_len)
    return fail("data section has " + std::to_string(data_len - pos) + " bytes after the last tensor: expected 0");
  std::vector<TensorView> sorted;
  for (size_t i : order) sorted.push_back(std::move(out.tensors[i]));
  out.tensors = std::move(sorted);
  return out;
}

}  // namespace

Status expect_regular_file(const std::string& path) {
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (!ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
    return Status::error(path + ": expected a regular file, got " +
                         (std::filesystem::is_directory(st) ? "a directory" : "a device, FIFO or socket"));
  return Status::ok();
}

Result<SafetensorsFile> read_safetensors(const std::string& path) {
  BLOCKLAB_RETURN_IF_ERROR(expect_regular_file(path));
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(path + ": cannot open: " + errno_text());
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status::error(path + ": read failed: " + errno_text());
  return parse_safetensors(bytes, path);
}

Result<MappedSafetensors> MappedSafetensors::open(const std::string& path) {
  BLOCKLAB_RETURN_IF_ERROR(expect_regular_file(path));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::error(path + ": cannot open: " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    return Status::error(path + ": cannot read: " + why);
  }
  MappedSafetensors m;
  m.size_ = size_t(st.st_size);
  if (m.size_ > 0) {  // an empty file cannot be mapped; its index below says what is wrong with it
    void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const std::string why = errno_text();
      ::close(fd);
      return Status::error(path + ": cannot map into memory: " + why);
    }
    m.base_ = p;
    ::madvise(p, m.size_, MADV_SEQUENTIAL);
  }
  ::close(fd);  // the mapping keeps the file
  Result<SafetensorsIndex> index =
      index_safetensors(std::span<const uint8_t>(static_cast<const uint8_t*>(m.base_), m.size_), path);
  if (!index) return index.status();
  m.index_ = std::move(index.value());
  return Result<MappedSafetensors>(std::move(m));
}

MappedSafetensors::MappedSafetensors(MappedSafetensors&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)), index_(std::move(o.index_)) {}

MappedSafetensors& MappedSafetensors::operator=(MappedSafetensors&& o) noexcept {
  if (this != &o) {
    if (base_) ::munmap(base_, size_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    index_ = std::move(o.index_);
  }
  return *this;
}

MappedSafetensors::~MappedSafetensors() {
  if (base_) ::munmap(base_, size_);
}

void MappedSafetensors::release(std::span<const uint8_t> bytes) const {
  if (!base_ || bytes.empty()) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(bytes.data()) + page - 1) / page * page;
  const uintptr_t end = (uintptr_t(bytes.data()) + bytes.size()) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

std::vector<uint8_t> serialize_safetensors(const SafetensorsFile& file) {
  json header = json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  for (const StoredTensor& t : file.tensors) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the reference writer
  const uint64_t len = text.size();
  std::vector<uint8_t> out(8 + len + offset);
  std::memcpy(out.data(), &len, 8);
  std::memcpy(out.data() + 8, text.data(), len);
  uint8_t* data = out.data() + 8 + len;
  for (const StoredTensor& t : file.tensors) {
    if (!t.bytes.empty()) std::memcpy(data, t.bytes.data(), t.bytes.size());
    data += t.bytes.size();
  }
  return out;
}

Status write_safetensors(const std::string& path, const SafetensorsFile& file) {
  const std::vector<uint8_t> bytes = serialize_safetensors(file);
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Status::error(path + ": cannot write: " + errno_text());
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  const bool flushed = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const bool closed = std::fclose(f) == 0;
  if (!written || !flushed || !closed) {
    const std::string why = errno_text();
    std::remove(tmp.c_str());
    return Status::error(path + ": write failed: " + why);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    std::remove(tmp.c_str());
    return Status::error(path + ": cannot rename the temporary file into place: " + why);
  }
  return Status::ok();
}

template <typename T>
bool decode_floats(DType dtype, const uint8_t* p, int64_t n, T* out) {
  switch (dtype) {
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) out[i] = T(load<double>(p + 8 * i));
      return true;
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) out[i] = T(load<float>(p + 4 * i));
      return true;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = T(f16_to_f32(load<uint16_t>(p + 2 * i)));
      return true;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = T(bf16_to_f32(load<uint16_t>(p + 2 * i)));
      return true;
    default:
      return false;
  }
}

Status float_dtype_error(const std::string& where, const std::string& tensor, DType dtype) {
  return Status::error(where + ": tensor '" + tensor + "': dtype: expected F32, F64, F16 or BF16, got " +
                       dtype_name(dtype));
}

template <typename T>
Result<Tensor<T>> to_float_tensor(const StoredTensor& s, const std::string& where) {
  Tensor<T> t(s.shape);
  if (!decode_floats(s.dtype, s.bytes.data(), t.numel(), t.ptr())) return float_dtype_error(where, s.name, s.dtype);
  return t;
}

Result<std::vector<int32_t>> to_int_ids(const StoredTensor& s, const std::string& where) {
  const int64_t n = numel_of(s.shape);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  const uint8_t* p = s.bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    double v;
    switch (s.dtype) {
      case DType::I64: v = double(load<int64_t>(p + 8 * i)); break;
      case DType::I32: v = load<int32_t>(p + 4 * i); break;
      case DType::I16: v = load<int16_t>(p + 2 * i); break;
      case DType::I8: v = load<int8_t>(p + i); break;
      case DType::U8: v = p[i]; break;
      case DType::F64: v = load<double>(p + 8 * i); break;
      case DType::F32: v = load<float>(p + 4 * i); break;
      default:
        return Status::error(where + ": tensor '" + s.name + "': dtype: expected integer ids (I64, I32, ...), got " +
                             dtype_name(s.dtype));
    }
    if (v != std::floor(v) || v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
      return Status::error(where + ": tensor '" + s.name + "'[" + std::to_string(i) + "]: expected an integer id, got " +
                           std::to_string(v));
    ids[size_t(i)] = int32_t(v);
  }
  return ids;
}

template <typename T>
StoredTensor from_float_tensor(std::string name, const Tensor<T>& t, DType dtype) {
  StoredTensor s{std::move(name), dtype, t.shape, {}};
  s.bytes.resize(size_t(t.numel()) * dtype_size(dtype));
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (dtype == DType::F64) {
      const double v = double(t.data[size_t(i)]);
      std::memcpy(s.bytes.data() + 8 * i, &v, 8);
    } else {
      const float v = float(t.data[size_t(i)]);
      std::memcpy(s.bytes.data() + 4 * i, &v, 4);
    }
  }
  return s;
}

StoredTensor from_int_ids(std::string name, const Shape& shape, const std::vector<int32_t>& ids) {
  StoredTensor s{std::move(name), DType::I64, shape, std::vector<uint8_t>(ids.size() * 8)};
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t v = ids[i];
    std::memcpy(s.bytes.data() + 8 * i, &v, 8);
  }
  return s;
}

template bool decode_floats<float>(DType, const uint8_t*, int64_t, float*);
template bool decode_floats<double>(DType, const uint8_t*, int64_t, double*);
template Result<Tensor<float>> to_float_tensor<float>(const StoredTensor&, const std::string&);
template Result<Tensor<double>> to_float_tensor<double>(const StoredTensor&, const std::string&);
template StoredTensor from_float_tensor<float>(std::string, const Tensor<float>&, DType);
template StoredTensor from_float_tensor<double>(std::string, const Tensor<double>&, DType);

}  // namespace blocklab::io
