# Thin aliases for ./dev.sh, which needs only bash and Python 3.10+ (make is optional).
.PHONY: run test lint bench

run:
	./dev.sh run

test:
	./dev.sh test

lint:
	./dev.sh lint

bench:
	./dev.sh bench
