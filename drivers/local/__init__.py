"""The reference `local` driver (sm_drivers/LocalSR, SR type `local`)."""
