# bascule A/B boot script for U-Boot (RAUC's variable scheme, so a RAUC device
# can switch to bascule without changing its bootloader).
#
#   BOOT_ORDER        slots to try, first = primary ("A B")
#   BOOT_x_LEFT       boot attempts left for slot x, plain decimal 0-9
#   BASCULE_ATTEMPTS  the attempts a slot gets (written by `bascule init-env` and
#                     `bascule install`); 3 when missing
#
# A slot boots when it is in BOOT_ORDER and its counter is above 0; the counter is
# decremented and saved before the kernel starts, so a slot that never confirms
# (`bascule mark-good`) runs out of tries and the next slot in BOOT_ORDER boots.
# Counters stay single decimal digits: setexpr prints hex, which equals decimal
# below 10 (bascule's config refuses attempts above 9 for this reason).
#
# One rule per case; bascule's model (src/slot/scheme.rs, RaucUboot) has the same
# rules, and qemu/ checks both against the real U-Boot:
#   BOOT_ORDER missing or empty   -> "A B" (saved)
#   a word other than A or B      -> skipped ("none" is what bascule writes when no
#                                    slot is left: an empty order would mean "A B")
#   BOOT_x_LEFT missing or empty  -> BASCULE_ATTEMPTS, or 3 (saved)
#   may a slot boot?              -> `test ${BOOT_x_LEFT} -gt 0` (U-Boot reads 0x.. as
#                                    hex and 0.. as octal there)
#   it boots                      -> `setexpr` decrements (reads hex, prints hex)
#   no slot may boot              -> both counters = BASCULE_ATTEMPTS (or 3), saved,
#                                    board reset
#
# Build: mkimage -A arm64 -T script -C none -d boot.cmd boot.scr
# Board specifics to set in the default environment: bascule_load_A, bascule_load_B
# (commands that load kernel/dtb of each slot), bascule_root_A, bascule_root_B,
# default_bootargs, bascule_boot (e.g. "booti ${kernel_addr_r} - ${fdt_addr_r}").

setenv bascule_attempts 3
test -n "${BASCULE_ATTEMPTS}" && setenv bascule_attempts "${BASCULE_ATTEMPTS}"
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT "${bascule_attempts}"
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT "${bascule_attempts}"

setenv bascule_slot
for BOOT_SLOT in ${BOOT_ORDER}; do
  if test -n "${bascule_slot}"; then
    # a slot was chosen already
  elif test "x${BOOT_SLOT}" = "xA"; then
    if test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      echo "bascule: booting slot A, ${BOOT_A_LEFT} attempts left after this one"
      setenv bascule_slot A
      setenv bascule_load "${bascule_load_A}"
      setenv bootargs "${default_bootargs} root=${bascule_root_A} bascule.slot=A rauc.slot=A"
    fi
  elif test "x${BOOT_SLOT}" = "xB"; then
    if test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      echo "bascule: booting slot B, ${BOOT_B_LEFT} attempts left after this one"
      setenv bascule_slot B
      setenv bascule_load "${bascule_load_B}"
      setenv bootargs "${default_bootargs} root=${bascule_root_B} bascule.slot=B rauc.slot=B"
    fi
  fi
done

if test -n "${bascule_slot}"; then
  saveenv
else
  echo "bascule: no slot has attempts left; resetting counters and the board"
  setenv BOOT_A_LEFT "${bascule_attempts}"
  setenv BOOT_B_LEFT "${bascule_attempts}"
  saveenv
  reset
fi

run bascule_load
run bascule_boot
