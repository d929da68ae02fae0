package main

import (
	"errors"
	"flag"
	"net/http"

	mhttp "github.com/melonsync/melonsync/http"
)

// RateFlags are serve's rate limit flags.
type RateFlags struct {
	PerUser, PerDevice     float64
	UserBurst, DeviceBurst int
}

func (f *RateFlags) define(fs *flag.FlagSet) {
	fs.Float64Var(&f.PerUser, "rate-user", 0, "sync requests per second allowed per user, all devices together (0: no limit)")
	fs.IntVar(&f.UserBurst, "rate-user-burst", 20, "requests a user may send at once above --rate-user")
	fs.Float64Var(&f.PerDevice, "rate-device", 0, "sync requests per second allowed per device of a user (0: no limit)")
	fs.IntVar(&f.DeviceBurst, "rate-device-burst", 10, "requests a device may send at once above --rate-device")
}

func (f *RateFlags) check() error {
	if f.PerUser < 0 || f.PerDevice < 0 || f.UserBurst < 1 || f.DeviceBurst < 1 {
		return errors.New("serve: rates must be 0 (off) or positive, bursts at least 1")
	}
	return nil
}

// wrap puts the rate limiter in front of h when a limit is set.
func (f *RateFlags) wrap(h http.Handler, auth *mhttp.Auth) http.Handler {
	o := mhttp.RateOptions{PerUser: f.PerUser, UserBurst: f.UserBurst, PerDevice: f.PerDevice, DeviceBurst: f.DeviceBurst}
	if !o.On() {
		return h
	}
	return mhttp.NewRateLimiter(h, auth, o)
}
