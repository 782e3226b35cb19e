package io.dpopverifier.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * Verifies DPoP proofs and DPoP-bound access tokens. Stateless apart from the shared replay
 * store, so any replica can answer any request.
 * </pre>
 */
@javax.annotation.Generated(
    value = "by gRPC proto compiler",
    comments = "Source: dpop/verifier/v1/verifier.proto")
@io.grpc.stub.annotations.GrpcGenerated
public final class VerifierServiceGrpc {

  private VerifierServiceGrpc() {}

  public static final String SERVICE_NAME = "dpop.verifier.v1.VerifierService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<io.dpopverifier.v1.VerifyRequest,
      io.dpopverifier.v1.VerifyResponse> getVerifyMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "Verify",
      requestType = io.dpopverifier.v1.VerifyRequest.class,
      responseType = io.dpopverifier.v1.VerifyResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<io.dpopverifier.v1.VerifyRequest,
      io.dpopverifier.v1.VerifyResponse> getVerifyMethod() {
    io.grpc.MethodDescriptor<io.dpopverifier.v1.VerifyRequest, io.dpopverifier.v1.VerifyResponse> getVerifyMethod;
    if ((getVerifyMethod = VerifierServiceGrpc.getVerifyMethod) == null) {
      synchronized (VerifierServiceGrpc.class) {
        if ((getVerifyMethod = VerifierServiceGrpc.getVerifyMethod) == null) {
          VerifierServiceGrpc.getVerifyMethod = getVerifyMethod =
              io.grpc.MethodDescriptor.<io.dpopverifier.v1.VerifyRequest, io.dpopverifier.v1.VerifyResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "Verify"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.dpopverifier.v1.VerifyRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  io.dpopverifier.v1.VerifyResponse.getDefaultInstance()))
              .setSchemaDescriptor(new VerifierServiceMethodDescriptorSupplier("Verify"))
              .build();
        }
      }
    }
    return getVerifyMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static VerifierServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<VerifierServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<VerifierServiceStub>() {
        @java.lang.Override
        public VerifierServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new VerifierServiceStub(channel, callOptions);
        }
      };
    return VerifierServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static VerifierServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<VerifierServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<VerifierServiceBlockingStub>() {
        @java.lang.Override
        public VerifierServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new VerifierServiceBlockingStub(channel, callOptions);
        }
      };
    return VerifierServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static VerifierServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<VerifierServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<VerifierServiceFutureStub>() {
        @java.lang.Override
        public VerifierServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new VerifierServiceFutureStub(channel, callOptions);
        }
      };
    return VerifierServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * Verifies DPoP proofs and DPoP-bound access tokens. Stateless apart from the shared replay
   * store, so any replica can answer any request.
   * </pre>
   */
  public static abstract class VerifierServiceImplBase implements io.grpc.BindableService {

    /**
     * <pre>
     * Verifies one HTTP request. A denial is a successful RPC whose response carries
     * DECISION_DENY and a reason; a non-OK gRPC status means the call itself failed (for
     * example a request larger than the server's message limit) and must be treated as a
     * denial by the caller.
     * </pre>
     */
    public void verify(io.dpopverifier.v1.VerifyRequest request,
        io.grpc.stub.StreamObserver<io.dpopverifier.v1.VerifyResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getVerifyMethod(), responseObserver);
    }

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
          .addMethod(
            getVerifyMethod(),
            io.grpc.stub.ServerCalls.asyncUnaryCall(
              new MethodHandlers<
                io.dpopverifier.v1.VerifyRequest,
                io.dpopverifier.v1.VerifyResponse>(
                  this, METHODID_VERIFY)))
          .build();
    }
  }

  /**
   * <pre>
   * Verifies DPoP proofs and DPoP-bound access tokens. Stateless apart from the shared replay
   * store, so any replica can answer any request.
   * </pre>
   */
  public static final class VerifierServiceStub extends io.grpc.stub.AbstractAsyncStub<VerifierServiceStub> {
    private VerifierServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected VerifierServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new VerifierServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * Verifies one HTTP request. A denial is a successful RPC whose response carries
     * DECISION_DENY and a reason; a non-OK gRPC status means the call itself failed (for
     * example a request larger than the server's message limit) and must be treated as a
     * denial by the caller.
     * </pre>
     */
    public void verify(io.dpopverifier.v1.VerifyRequest request,
        io.grpc.stub.StreamObserver<io.dpopverifier.v1.VerifyResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getVerifyMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * <pre>
   * Verifies DPoP proofs and DPoP-bound access tokens. Stateless apart from the shared replay
   * store, so any replica can answer any request.
   * </pre>
   */
  public static final class VerifierServiceBlockingStub extends io.grpc.stub.AbstractBlockingStub<VerifierServiceBlockingStub> {
    private VerifierServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected VerifierServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new VerifierServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * Verifies one HTTP request. A denial is a successful RPC whose response carries
     * DECISION_DENY and a reason; a non-OK gRPC status means the call itself failed (for
     * example a request larger than the server's message limit) and must be treated as a
     * denial by the caller.
     * </pre>
     */
    public io.dpopverifier.v1.VerifyResponse verify(io.dpopverifier.v1.VerifyRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getVerifyMethod(), getCallOptions(), request);
    }
  }

  /**
   * <pre>
   * Verifies DPoP proofs and DPoP-bound access tokens. Stateless apart from the shared replay
   * store, so any replica can answer any request.
   * </pre>
   */
  public static final class VerifierServiceFutureStub extends io.grpc.stub.AbstractFutureStub<VerifierServiceFutureStub> {
    private VerifierServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected VerifierServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new VerifierServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * Verifies one HTTP request. A denial is a successful RPC whose response carries
     * DECISION_DENY and a reason; a non-OK gRPC status means the call itself failed (for
     * example a request larger than the server's message limit) and must be treated as a
     * denial by the caller.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<io.dpopverifier.v1.VerifyResponse> verify(
        io.dpopverifier.v1.VerifyRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getVerifyMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_VERIFY = 0;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final VerifierServiceImplBase serviceImpl;
    private final int methodId;

    MethodHandlers(VerifierServiceImplBase serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_VERIFY:
          serviceImpl.verify((io.dpopverifier.v1.VerifyRequest) request,
              (io.grpc.stub.StreamObserver<io.dpopverifier.v1.VerifyResponse>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        default:
          throw new AssertionError();
      }
    }
  }

  private static abstract class VerifierServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    VerifierServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return io.dpopverifier.v1.VerifierProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("VerifierService");
    }
  }

  private static final class VerifierServiceFileDescriptorSupplier
      extends VerifierServiceBaseDescriptorSupplier {
    VerifierServiceFileDescriptorSupplier() {}
  }

  private static final class VerifierServiceMethodDescriptorSupplier
      extends VerifierServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final String methodName;

    VerifierServiceMethodDescriptorSupplier(String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (VerifierServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new VerifierServiceFileDescriptorSupplier())
              .addMethod(getVerifyMethod())
              .build();
        }
      }
    }
    return result;
  }
}
