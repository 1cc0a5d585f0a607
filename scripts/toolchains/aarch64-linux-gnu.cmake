# CMake toolchain file: cross-compile the addon for linux-arm64 (aarch64) with Debian's
# g++-aarch64-linux-gnu (apt install g++-aarch64-linux-gnu). Used by
#   node scripts/build-native.mjs --arch arm64      (scripts/prepack.mjs, CANOPY_PREBUILD_ARM64)
# The baseline is plain armv8-a (NEON/ASIMD is part of it); the dotprod kernels are compiled
# for +dotprod in their own functions and chosen at run time (csrc/cpu/cpu_features.cc).
# CANOPY_AARCH64_PREFIX overrides the tool prefix (default aarch64-linux-gnu-).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
if(DEFINED ENV{CANOPY_AARCH64_PREFIX})
  set(_canopy_prefix "$ENV{CANOPY_AARCH64_PREFIX}")
else()
  set(_canopy_prefix "aarch64-linux-gnu-")
endif()
set(CMAKE_C_COMPILER ${_canopy_prefix}gcc)
set(CMAKE_CXX_COMPILER ${_canopy_prefix}g++)
set(CMAKE_AR ${_canopy_prefix}ar CACHE FILEPATH "")
set(CMAKE_RANLIB ${_canopy_prefix}ranlib CACHE FILEPATH "")
set(CMAKE_STRIP ${_canopy_prefix}strip CACHE FILEPATH "")
# Headers and libraries from the cross sysroot only; programs (node, for the build's helper
# scripts) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
