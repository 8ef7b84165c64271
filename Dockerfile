# syntax=docker/dockerfile:1
# Multi-stage: a static binary on a distroless, non-root base with no shell.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/modelguard ./cmd/modelguard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/modelguard /modelguard
USER 65532:65532
ENTRYPOINT ["/modelguard"]
CMD ["serve"]
