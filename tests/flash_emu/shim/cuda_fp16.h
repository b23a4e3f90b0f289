/* the host emulation's stand-in (tests/flash_emu/emu.h) */
#pragma once
#include "../emu.h"
