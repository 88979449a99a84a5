// Checksums needed by the NAS-Bench-101 space and its data file (torch-free):
// - MD5 (RFC 1321): the official NB101 graph hash is built from MD5 hex digests;
// - CRC-32C (Castagnoli polynomial, reflected 0x82F63B78) and TFRecord's "masked" form, which
//   frame every record of the official nasbench_*.tfrecord files.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace zc {

using Md5Digest = std::array<uint8_t, 16>;

Md5Digest md5(const void* data, size_t len);
// 32 lower-case hex digits, as Python's hashlib.md5(...).hexdigest().
void md5_hex(const void* data, size_t len, char out[32]);
std::string hex(const Md5Digest& d);

// CRC-32C of data, continuing from `crc` (0 to start), as in iSCSI / TFRecord.
uint32_t crc32c(const void* data, size_t len, uint32_t crc = 0);
// TFRecord's masked CRC: rotate right by 15 bits, add 0xa282ead8.
inline uint32_t mask_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8U; }

}  // namespace zc
