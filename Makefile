# srkit: `make rpm` builds every RPM into one signed yum repository (see README, "For admins").
PYTHON ?= python3

.PHONY: rpm clean
rpm:
	$(PYTHON) packaging/build.py --out dist

clean:
	rm -rf dist
