// The safetensors format: 8-byte little-endian header length N, N bytes of JSON header
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}),
// then the raw little-endian data. Reading checks every length and offset against the file before
// touching data; writing goes to a temporary file that is renamed into place, so a failed write
// leaves nothing behind.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "engine/status.h"
#include "engine/tensor.h"

namespace blocklab::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType dtype);  // "F32"
size_t dtype_size(DType dtype);       // bytes per element

struct StoredTensor {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::vector<uint8_t> bytes;  // numel * dtype_size, little-endian
};

struct SafetensorsFile {
  std::vector<StoredTensor> tensors;  // in file (offset) order when read
  std::map<std::string, std::string> metadata;

  const StoredTensor* find(const std::string& name) const;
  void add(StoredTensor tensor) { tensors.push_back(std::move(tensor)); }
};

// A tensor of a file held elsewhere (in memory, or mapped): its bytes are a view into that file.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::span<const uint8_t> bytes;  // numel * dtype_size, little-endian
};

struct SafetensorsIndex {
  std::vector<TensorView> tensors;  // in file (offset) order
  std::map<std::string, std::string> metadata;

  const TensorView* find(const std::string& name) const;
};

// `where` names the source in error messages (usually the path).
// The header of `file`, with every check parse_safetensors makes; the views point into `file`.
Result<SafetensorsIndex> index_safetensors(std::span<const uint8_t> file, const std::string& where);
// index_safetensors, then each tensor's bytes copied out of `file`.
Result<SafetensorsFile> parse_safetensors(std::span<const uint8_t> file, const std::string& where);

// A safetensors file mapped read-only into memory (mmap) and indexed: nothing of the data is read until a
// view's bytes are, so a loader converts straight from the file into its own buffers, without a copy of
// the file in memory. The file must not be truncated while it is mapped (reading past its end is SIGBUS).
class MappedSafetensors {
 public:
  static Result<MappedSafetensors> open(const std::string& path);
  MappedSafetensors(MappedSafetensors&& other) noexcept;
  MappedSafetensors& operator=(MappedSafetensors&& other) noexcept;
  MappedSafetensors(const MappedSafetensors&) = delete;
  MappedSafetensors& operator=(const MappedSafetensors&) = delete;
  ~MappedSafetensors();

  const SafetensorsIndex& index() const { return index_; }
  // Done with a view: its pages leave this process's resident memory (the page cache keeps them; reading
  // the view again reads them back), so converting tensor after tensor holds at most one of them.
  void release(const TensorView& view) const { release(view.bytes); }
  // The same for a part of the mapping (whole pages inside `bytes` only: a page shared with a neighbour stays).
  void release(std::span<const uint8_t> bytes) const;

 private:
  MappedSafetensors() = default;
  void* base_ = nullptr;
  size_t size_ = 0;
  SafetensorsIndex index_;
};
// Only a regular file has an end: /dev/zero, a FIFO or a terminal would be read forever (and into memory).
// ok for a regular file and for a path that does not exist (opening it then says so).
Status expect_regular_file(const std::string& path);
Result<SafetensorsFile> read_safetensors(const std::string& path);
std::vector<uint8_t> serialize_safetensors(const SafetensorsFile& file);
// Writes `path` atomically (temporary file in the same folder, then rename).
Status write_safetensors(const std::string& path, const SafetensorsFile& file);

// n elements of a float dtype (F64, F32, F16, BF16) at `bytes`, converted to T into `out`; false (nothing
// written) for any other dtype.
template <typename T>
bool decode_floats(DType dtype, const uint8_t* bytes, int64_t n, T* out);
// The error for a tensor whose dtype is not a float one: names it, expected vs got.
Status float_dtype_error(const std::string& where, const std::string& tensor, DType dtype);
// A floating-point tensor of any stored float dtype (F64, F32, F16, BF16), converted to T.
template <typename T>
Result<Tensor<T>> to_float_tensor(const StoredTensor& stored, const std::string& where);
// Integer ids (I64, I32, I16, I8, U8, or floats holding whole numbers), as int32.
Result<std::vector<int32_t>> to_int_ids(const StoredTensor& stored, const std::string& where);

// Stores `t` as `dtype` (F32 or F64).
template <typename T>
StoredTensor from_float_tensor(std::string name, const Tensor<T>& t, DType dtype);
StoredTensor from_int_ids(std::string name, const Shape& shape, const std::vector<int32_t>& ids);

}  // namespace blocklab::io
