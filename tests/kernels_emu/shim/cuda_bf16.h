/* the host emulation's stand-in (tests/kernels_emu/kemu.h) */
#pragma once
#include "../kemu.h"
