// A fixed-size array of a large table on transparent huge pages: an
// anonymous mapping rounded up to 2 MiB with MADV_HUGEPAGE, so that a
// million-entry conntrack table costs a few hundred TLB entries instead of
// tens of thousands (every lookup of a random flow missed the TLB). Where
// THP is "never" the advice is ignored and the array is plain memory.
// Elements are value-initialised; control thread only (it maps memory).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace dpgate::util {

template <class T>
class HugeArray {
 public:
  static constexpr size_t kHugePage = size_t{2} << 20;

  HugeArray() = default;
  explicit HugeArray(size_t n) : n_(n) {
    bytes_ = (n * sizeof(T) + kHugePage - 1) / kHugePage * kHugePage;
    if (bytes_ == 0) return;
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, bytes_, MADV_HUGEPAGE);  // advice: failure leaves small pages
    data_ = static_cast<T*>(p);
    for (size_t i = 0; i < n; ++i) new (data_ + i) T();
  }
  HugeArray(HugeArray&& o) noexcept { swap(o); }
  HugeArray& operator=(HugeArray&& o) noexcept {
    HugeArray(std::move(o)).swap(*this);
    return *this;
  }
  HugeArray(const HugeArray&) = delete;
  HugeArray& operator=(const HugeArray&) = delete;
  ~HugeArray() {
    if (data_ == nullptr) return;
    if constexpr (!std::is_trivially_destructible_v<T>) {
      for (size_t i = 0; i < n_; ++i) data_[i].~T();
    }
    munmap(data_, bytes_);
  }

  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T* get() { return data_; }
  const T* get() const { return data_; }
  size_t size() const { return n_; }

 private:
  void swap(HugeArray& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(n_, o.n_);
    std::swap(bytes_, o.bytes_);
  }
  T* data_ = nullptr;
  size_t n_ = 0;
  size_t bytes_ = 0;
};

}  // namespace dpgate::util
