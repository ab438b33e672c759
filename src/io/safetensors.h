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

// `where` names the source in error messages (usually the path).
Result<SafetensorsFile> parse_safetensors(std::span<const uint8_t> file, const std::string& where);
// Only a regular file has an end: /dev/zero, a FIFO or a terminal would be read forever (and into memory).
// ok for a regular file and for a path that does not exist (opening it then says so).
Status expect_regular_file(const std::string& path);
Result<SafetensorsFile> read_safetensors(const std::string& path);
std::vector<uint8_t> serialize_safetensors(const SafetensorsFile& file);
// Writes `path` atomically (temporary file in the same folder, then rename).
Status write_safetensors(const std::string& path, const SafetensorsFile& file);

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
