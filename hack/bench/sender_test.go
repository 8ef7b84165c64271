package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// reviewServer answers AdmissionReviews: allowed unless the UID contains "deny", HTTP 500
// for a UID containing "fail", and Connection: close on every closeEvery-th answer. It
// records the client address of each request, to show which connection carried it.
type reviewServer struct {
	*httptest.Server
	closeEvery int
	mu         sync.Mutex
	served     int
	remotes    []string
}

func newReviewServer(t *testing.T, closeEvery int) *reviewServer {
	s := &reviewServer{closeEvery: closeEvery}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *reviewServer) serve(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "not a review", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.served++
	s.remotes = append(s.remotes, r.RemoteAddr)
	closing := s.closeEvery > 0 && s.served%s.closeEvery == 0
	s.mu.Unlock()
	uid := string(review.Request.UID)
	if strings.Contains(uid, "fail") {
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	}
	if closing {
		w.Header().Set("Connection", "close")
	}
	review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: !strings.Contains(uid, "deny")}
	review.Request = nil
	_ = json.NewEncoder(w).Encode(review)
}

func (s *reviewServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

func (s *reviewServer) distinctRemotes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range s.remotes {
		seen[r] = true
	}
	return len(seen)
}

func reviewRequest(t *testing.T, uid string, allowed bool) request {
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metaReview,
		Request:  &admissionv1.AdmissionRequest{UID: types.UID(uid), Operation: admissionv1.Create},
	})
	require.NoError(t, err)
	return request{uid: types.UID(uid), body: body, allowed: allowed}
}

var metaReview = metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}

// openSession starts a review server and opens a session of a kind of load client on it;
// the test's cleanup closes both.
func openSession(t *testing.T, kind string) (*reviewServer, session) {
	srv := newReviewServer(t, 0)
	l, err := newLoader(kind, srv.caPEM(), 4, false)
	require.NoError(t, err)
	s, err := l.session(srv.URL + "/validate")
	require.NoError(t, err)
	t.Cleanup(func() {
		s.close()
		l.closeIdle()
	})
	return srv, s
}

// Both load clients check every answer the same way: status, UID and verdict.
func TestLoadersCheckAnswers(t *testing.T) {
	for _, kind := range []string{clientConn, clientNetHTTP} {
		t.Run(kind, func(t *testing.T) {
			srv, s := openSession(t, kind)
			ctx := context.Background()
			for i := range 10 {
				require.NoError(t, s.send(ctx, reviewRequest(t, "ok-"+string(rune('a'+i)), true)))
			}
			require.NoError(t, s.send(ctx, reviewRequest(t, "deny-1", false)))
			assert.ErrorContains(t, s.send(ctx, reviewRequest(t, "deny-2", true)), "want allowed=true")
			assert.ErrorContains(t, s.send(ctx, reviewRequest(t, "ok-z", false)), "want allowed=false")
			assert.ErrorContains(t, s.send(ctx, reviewRequest(t, "fail-1", true)), "HTTP 500")
			// An error answer does not cost the connection: all went over one.
			require.NoError(t, s.send(ctx, reviewRequest(t, "ok-after", true)))
			assert.Equal(t, 1, srv.distinctRemotes())
		})
	}
}

// The conn client keeps a session's connection for the next session, redials when the
// server closes one, and drops what it keeps on closeIdle.
func TestConnLoaderConnections(t *testing.T) {
	srv := newReviewServer(t, 3)
	l, err := newLoader(clientConn, srv.caPEM(), 4, false)
	require.NoError(t, err)
	ctx := context.Background()
	target := srv.URL + "/validate"

	s, err := l.session(target)
	require.NoError(t, err)
	for range 7 { // the server closes after the 3rd and the 6th answer
		require.NoError(t, s.send(ctx, reviewRequest(t, "ok", true)))
	}
	s.close()
	assert.Equal(t, 3, srv.distinctRemotes())

	s, err = l.session(target)
	require.NoError(t, err)
	require.NoError(t, s.send(ctx, reviewRequest(t, "ok", true))) // the 8th: on the kept connection
	s.close()
	assert.Equal(t, 3, srv.distinctRemotes())

	l.closeIdle()
	s, err = l.session(target)
	require.NoError(t, err)
	require.NoError(t, s.send(ctx, reviewRequest(t, "ok", true)))
	s.close()
	assert.Equal(t, 4, srv.distinctRemotes())
	l.closeIdle()
}

// A connection the server drops between requests fails the next request (as net/http's
// Transport fails a POST it cannot retry); the one after it goes over a new connection.
func TestConnLoaderRecoversFromDroppedConnection(t *testing.T) {
	srv, s := openSession(t, clientConn)
	ctx := context.Background()
	require.NoError(t, s.send(ctx, reviewRequest(t, "ok", true)))
	srv.CloseClientConnections()
	time.Sleep(50 * time.Millisecond) // let the close reach the client's socket
	assert.Error(t, s.send(ctx, reviewRequest(t, "ok", true)))
	require.NoError(t, s.send(ctx, reviewRequest(t, "ok", true)))
	assert.Equal(t, 2, srv.distinctRemotes())
}

func TestNewLoaderRejects(t *testing.T) {
	_, err := newLoader("curl", newReviewServer(t, 0).caPEM(), 1, false)
	assert.ErrorContains(t, err, `unknown client "curl"`)
	_, err = newLoader(clientConn, []byte("not pem"), 1, false)
	assert.ErrorContains(t, err, "not PEM")
}

// A run's workers report errors rather than hanging or panicking when the target is wrong.
func TestClosedLoopBadTarget(t *testing.T) {
	srv := newReviewServer(t, 0)
	l, err := newLoader(clientConn, srv.caPEM(), 4, false)
	require.NoError(t, err)
	out := closedLoop(context.Background(), l, "://no", []request{reviewRequest(t, "ok", true)}, 2, 100*time.Millisecond)
	assert.Equal(t, 2, out.Errors)
	assert.Contains(t, out.FirstErr, "target")
	out = fixedRate(context.Background(), l, "://no", []request{reviewRequest(t, "ok", true)}, 2, 100, 100*time.Millisecond, nil)
	assert.Positive(t, out.Errors)
}
